"""Reads about clients and who may act on them."""
from __future__ import annotations

import re
from dataclasses import dataclass

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser

from tenants.models import CLIENT_ID_MAX_LENGTH, CLIENT_ID_PATTERN, ROLE_RANK, Client, Membership

OPERATOR = "operator"
CLIENT_ID_RE = re.compile(CLIENT_ID_PATTERN)


def client_id_is_wellformed(client_id: object) -> bool:
    """Whether `client_id` could name a client (pattern and length): anything else is answered as
    an unknown client without a query."""
    return isinstance(client_id, str) and len(client_id) <= CLIENT_ID_MAX_LENGTH and bool(
        CLIENT_ID_RE.fullmatch(client_id))


@dataclass(frozen=True, slots=True)
class ClientAccess:
    """What one user may do on one client. Operators (staff) read every client, change nothing."""

    client: Client
    role: str  # owner / trader / viewer, or "operator" for staff without a membership

    def allows(self, required_role: str) -> bool:
        rank = ROLE_RANK[Membership.Role.VIEWER] if self.role == OPERATOR else ROLE_RANK[self.role]
        return rank >= ROLE_RANK[required_role]


def client_access_get(*, user: AbstractBaseUser | AnonymousUser, client_id: str) -> ClientAccess | None:
    """The user's access to the client, or None — the same None for a client that does not exist,
    a suspended one and one the user is not a member of, so that clients cannot be enumerated."""
    if not user.is_authenticated or not user.is_active:
        return None
    if not client_id_is_wellformed(client_id):
        return None  # not a client id at all (a NUL byte, say): never reaches the database
    membership = (
        Membership.objects.select_related("client")
        .filter(user=user, client__client_id=client_id, client__status=Client.Status.ACTIVE)
        .first()
    )
    if membership is not None:
        return ClientAccess(client=membership.client, role=membership.role)
    if user.is_staff:
        client = Client.objects.filter(client_id=client_id).first()
        if client is not None:
            return ClientAccess(client=client, role=OPERATOR)
    return None



def user_clients_list(*, user: AbstractBaseUser | AnonymousUser) -> list[ClientAccess]:
    """Every active client the user is a member of, with the role, by client id."""
    if not user.is_authenticated or not user.is_active:
        return []
    memberships = (Membership.objects.select_related("client")
                   .filter(user=user, client__status=Client.Status.ACTIVE).order_by("client__client_id"))
    return [ClientAccess(client=membership.client, role=membership.role) for membership in memberships]
