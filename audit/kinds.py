"""Audit event kinds: short dotted codes, `<area>.<what happened>`.

`audit_record` accepts any code of this shape (a new kind needs no change here); these constants
name the ones the platform writes so that callers and readers agree on the spelling.
"""
from __future__ import annotations

import re

KIND_MAX_LENGTH = 64
KIND_PATTERN = re.compile(r"^[a-z][a-z0-9_]*(?:\.[a-z][a-z0-9_]*)+$")

AUTH_LOGIN = "auth.login"
AUTH_LOGIN_FAILED = "auth.login_failed"
AUTH_LOGOUT = "auth.logout"
AUTH_LOCKOUT = "auth.lockout"
AUTH_TOKENS_REVOKED = "auth.tokens_revoked"
AUTH_PASSWORD_CHANGED = "auth.password_changed"
AUTH_MFA_ENROLLED = "auth.mfa_enrolled"  # a TOTP secret issued, not yet confirmed
AUTH_MFA_CONFIRMED = "auth.mfa_confirmed"  # confirmed with a code; recovery codes issued
AUTH_MFA_DISABLED = "auth.mfa_disabled"  # by the user, with a code
AUTH_MFA_RESET = "auth.mfa_reset"  # by an operator (console, management command)
AUTH_MFA_RECOVERY_USED = "auth.mfa_recovery_used"

CLIENT_MFA_POLICY_CHANGED = "client.mfa_policy_changed"

TEAM_MEMBER_ADDED = "team.member_added"
TEAM_ROLE_CHANGED = "team.role_changed"
TEAM_MEMBER_REMOVED = "team.member_removed"

RISK_DECISION = "risk.decision"
RISK_STATE_CHANGED = "risk.state_changed"
RISK_KILL_SWITCH = "risk.kill_switch"

HALT_EMERGENCY = "halt.emergency"
HALT_EMERGENCY_LIFTED = "halt.emergency_lifted"
HALT_CLIENT = "halt.client"
HALT_CLIENT_LIFTED = "halt.client_lifted"

AGENT_MODE_CHANGED = "agent.mode_changed"
AGENT_MODE_REFUSED = "agent.mode_refused"
AGENT_PARAMETERS_CHANGED = "agent.parameters_changed"
AGENT_NOTE_ADDED = "agent.note_added"
AGENT_DECISION = "agent.decision"
AGENT_CYCLE_FAILED = "agent.cycle_failed"
AGENT_CYCLE_SKIPPED = "agent.cycle_skipped"  # client busy: a lock not granted in time (once per outage)
AGENT_CYCLE_ABANDONED = "agent.cycle_abandoned"  # ended by the reaper: its worker was killed
AGENT_CHAT = "agent.chat"

BROKER_CONNECTED = "broker.connected"
BROKER_FAILED = "broker.failed"

ORDER_EXECUTED = "order.executed"
ORDER_CANCELLED = "order.cancelled"
ORDER_CANCEL_FAILED = "order.cancel_failed"
ORDER_UPDATED = "order.updated"  # the broker reports a working order's state changed (filled, cancelled...)

CLIENT_ONBOARDED = "client.onboarded"

OPERATOR_CREATED = "operator.created"  # the platform's first operator, by `platform_setup`

PROPOSAL_CREATED = "proposal.created"
PROPOSAL_APPROVED = "proposal.approved"
PROPOSAL_REJECTED = "proposal.rejected"
PROPOSAL_EXPIRED = "proposal.expired"
PROPOSAL_SUPERSEDED = "proposal.superseded"
PROPOSAL_EXECUTED = "proposal.executed"
PROPOSAL_BLOCKED = "proposal.blocked"
PROPOSAL_HALTED = "proposal.halted"  # an approval refused by a halt after its claim: back to pending
PROPOSAL_FAILED = "proposal.failed"


def kind_is_valid(kind: str) -> bool:
    return len(kind) <= KIND_MAX_LENGTH and KIND_PATTERN.fullmatch(kind) is not None
