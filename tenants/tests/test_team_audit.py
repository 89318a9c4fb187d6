"""Team management leaves its trace: memberships added, changed and removed, by a service or in the
operator console, are in the client's hash-chained audit trail with who did it."""
from __future__ import annotations

from django.contrib.auth import get_user_model
from django.test import Client as Browser

from tenants.models import Membership
from tenants.services import membership_remove, membership_set
from tradingplatform.testing import PASSWORD, audit_events


def test_a_member_added_changed_and_removed_is_audited_with_the_actor(alpha):
    user = get_user_model().objects.create_user(username="newcomer", password=PASSWORD)
    membership = membership_set(client=alpha.client, user=user, role=Membership.Role.VIEWER, actor="alpha-owner")
    membership_set(client=alpha.client, user=user, role=Membership.Role.TRADER, actor="alpha-owner")
    membership_set(client=alpha.client, user=user, role=Membership.Role.TRADER, actor="alpha-owner")  # no change
    membership_remove(membership=Membership.objects.get(pk=membership.pk), actor="ops")
    events = [(e.kind, e.actor_id, e.payload["username"], e.payload.get("role"), e.payload.get("role_before"))
              for e in audit_events(client_id="alpha", kind__startswith="team.")
              if e.payload["username"] == "newcomer"]
    assert events == [("team.member_added", "alpha-owner", "newcomer", "viewer", None),
                      ("team.role_changed", "alpha-owner", "newcomer", "trader", "viewer"),
                      ("team.member_removed", "ops", "newcomer", None, "trader")]


def test_the_consoles_membership_changes_are_audited_with_the_operator(alpha):
    operator = get_user_model().objects.create_superuser(username="console-op", password=PASSWORD)
    browser = Browser()
    browser.force_login(operator)
    membership = Membership.objects.get(client=alpha.client, user=alpha.viewer)
    response = browser.post(f"/admin/tenants/membership/{membership.pk}/change/",
                            {"user": alpha.viewer.pk, "client": alpha.client.pk, "role": "trader"})
    assert response.status_code == 302
    response = browser.post(f"/admin/tenants/membership/{membership.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302
    assert not Membership.objects.filter(pk=membership.pk).exists()
    kinds = [(e.kind, e.actor_id) for e in audit_events(client_id="alpha", kind__startswith="team.")
             if e.actor_id == "console-op"]
    assert kinds == [("team.role_changed", "console-op"), ("team.member_removed", "console-op")]
