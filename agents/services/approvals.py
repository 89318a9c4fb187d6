"""A trader's approval and rejection, and expiry: a pending proposal is claimed under its row lock
before anything is sent, so a second approval gets a conflict and never a second order."""
from __future__ import annotations

import logging
import uuid
from collections.abc import Callable

from django.db import transaction
from django.utils import timezone

from agents.models import Proposal
from agents.services.execution import _proposal_execute
from agents.services.proposals import (
    ProposalConflict,
    ProposalExpired,
    ProposalNotFound,
    RiskRejected,
    _publish_proposal,
    _stored_hash,
    _trading_blocked_reason,
)
from audit import kinds
from audit import services as audit
from brokers.domain import BrokerError
from brokers.models import Order as OrderRow
from risk import services as risk
from tenants.models import Client

logger = logging.getLogger(__name__)

# ---------------------------------------------------------------------------------------------
# A trader's approval and rejection; expiry
# ---------------------------------------------------------------------------------------------

def _claim(*, client: Client, proposal_id: str, user: str, to_status: str,
           on_claimed: Callable[[Proposal], None]) -> Proposal:
    """Lock a pending proposal and move it on (`on_claimed` runs, and the `proposal` event is
    written, in the same transaction). Raises
    ProposalNotFound / ProposalExpired (marking it expired) / ProposalConflict; approvals also
    ExecutionHalted while trading is halted."""
    now = timezone.now()
    expired = None
    with transaction.atomic():
        proposal = Proposal.objects.select_for_update().filter(pk=_uuid_or_none(proposal_id)).first()
        if proposal is None:
            raise ProposalNotFound(proposal_id)
        if proposal.status == Proposal.Status.PENDING and proposal.expires_at <= now:
            expired = _expire(client=client, proposal=proposal)
        elif proposal.status == Proposal.Status.EXPIRED:
            expired = proposal
        elif proposal.status != Proposal.Status.PENDING:
            raise ProposalConflict(f"proposal {proposal.pk} is {proposal.status}, not pending")
        else:
            if to_status == Proposal.Status.EXECUTING:
                if (reason := _trading_blocked_reason(client)) is not None:
                    raise risk.ExecutionHalted(reason)
                if _stored_hash(proposal) != proposal.content_hash:
                    raise ProposalConflict(f"proposal {proposal.pk} does not match its content hash")
            proposal.status = to_status
            proposal.decided_by = user
            proposal.decided_at = now
            proposal.save(update_fields=["status", "decided_by", "decided_at", "updated_at"])
            on_claimed(proposal)
            _publish_proposal(client=client, proposal=proposal, event="updated")
        if expired is not None:
            _publish_proposal(client=client, proposal=expired, event="updated")
    if expired is not None:
        raise ProposalExpired(f"proposal {expired.pk} expired at {expired.expires_at.isoformat()}")
    return proposal


def _uuid_or_none(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(value))
    except ValueError:
        return None


def _expire(*, client: Client, proposal: Proposal) -> Proposal:
    proposal.status = Proposal.Status.EXPIRED
    proposal.save(update_fields=["status", "updated_at"])
    audit.audit_record(client_id=client.client_id, actor_type="system", actor_id="agent", kind=kinds.PROPOSAL_EXPIRED,
                       payload={"proposal_id": str(proposal.pk), "expires_at": proposal.expires_at.isoformat()})
    return proposal


def proposal_approve(*, client: Client, proposal_id: str, user: str) -> Proposal:
    """A trader's approval: claimed exactly once, re-checked by the governor against the current book
    and market, then sent. Raises RiskRejected when the governor refuses it now."""
    def approved(proposal: Proposal) -> None:
        audit.audit_record(client_id=client.client_id, actor_type="user", actor_id=user, kind=kinds.PROPOSAL_APPROVED,
                           payload={"proposal_id": str(proposal.pk), "content_hash": proposal.content_hash})

    proposal = _claim(client=client, proposal_id=proposal_id, user=user, to_status=Proposal.Status.EXECUTING,
                      on_claimed=approved)
    try:
        proposal = _proposal_execute(client=client, proposal=proposal, actor=risk.Actor("user", user),
                                     purpose="approval", halt_raises=True)
    except risk.ExecutionHalted as exc:
        # A halt that landed between the claim and the send: nothing was sent, and the proposal
        # goes back to pending (it may still expire), approvable again after the lift.
        _approval_withdraw(client=client, proposal=proposal, reason=exc.reason)
        raise
    except BrokerError:
        # The broker could not be reached. Before the order was recorded nothing was sent: the
        # proposal goes back to pending and may be approved again. After, it stays executing and
        # the next cycle asks the broker what became of it.
        if not OrderRow.objects.filter(client_order_id=proposal.client_order_id).exists():
            Proposal.objects.filter(pk=proposal.pk, status=Proposal.Status.EXECUTING).update(
                status=Proposal.Status.PENDING, decided_by="", decided_at=None)
        raise
    if proposal.status == Proposal.Status.BLOCKED:
        raise RiskRejected((proposal.execution or {}).get("decision") or {
            "violations": [{"code": "trading_halted", "message": (proposal.execution or {}).get("blocked", "")}]})
    return proposal


def _approval_withdraw(*, client: Client, proposal: Proposal, reason: str) -> None:
    """Put a claimed proposal back to pending when a halt refused its send (nothing was sent: the
    governor refused before any order row), audited and published."""
    with transaction.atomic():
        reverted = Proposal.objects.filter(pk=proposal.pk, status=Proposal.Status.EXECUTING).exclude(
            client_order_id__in=OrderRow.objects.values("client_order_id")).update(
            status=Proposal.Status.PENDING, decided_by="", decided_at=None)
        if reverted:
            audit.audit_record(client_id=client.client_id, actor_type="system", actor_id="governor",
                               kind=kinds.PROPOSAL_HALTED,
                               payload={"proposal_id": str(proposal.pk), "reason": reason, "status": "pending"})
            proposal.refresh_from_db()
            _publish_proposal(client=client, proposal=proposal, event="updated")


def proposal_reject(*, client: Client, proposal_id: str, user: str, reason: str) -> Proposal:
    def rejected(proposal: Proposal) -> None:
        proposal.decision_reason = reason
        proposal.save(update_fields=["decision_reason", "updated_at"])
        audit.audit_record(client_id=client.client_id, actor_type="user", actor_id=user, kind=kinds.PROPOSAL_REJECTED,
                           payload={"proposal_id": str(proposal.pk), "reason": reason})

    proposal = _claim(client=client, proposal_id=proposal_id, user=user, to_status=Proposal.Status.REJECTED,
                      on_claimed=rejected)
    return proposal


def proposals_expire(*, client: Client) -> int:
    """Mark every pending proposal past its time to live expired; returns how many."""
    with transaction.atomic():
        expired = [_expire(client=client, proposal=proposal)
                   for proposal in Proposal.objects.select_for_update(skip_locked=True).filter(
                       status=Proposal.Status.PENDING, expires_at__lte=timezone.now())]
        for proposal in expired:
            _publish_proposal(client=client, proposal=proposal, event="updated")
    return len(expired)
