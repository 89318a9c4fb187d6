"""The Redis conversation between callers and the session process.

A call is one JSON request pushed on `requests` (`id`, `key`, `credentials`, `method`, `args`,
`deadline` in epoch seconds) and one reply pushed on `reply:<id>` (`{"ok": value}` or
`{"error": BrokerError payload}`), kept a short while. The process never executes a request whose
deadline has passed: its caller has already given up and reported the outcome as unknown.

The process says it is alive with `alive` (expires after a few seconds) and publishes each
account session's state under `state:<key>`; both are read without a round trip to the process.
"""
from __future__ import annotations

import hashlib
import json
from typing import Any

from django.conf import settings

REPLY_TTL_SECONDS = 60
ALIVE_TTL_SECONDS = 5
STATE_TTL_SECONDS = 10
JOURNAL_TTL_SECONDS = 8 * 24 * 3600  # longer than a weekend and IB's week of executions


def prefix() -> str:
    return getattr(settings, "IBKR_SESSIONS_REDIS_PREFIX", "ibkr:sessions")


def requests_key() -> str:
    return f"{prefix()}:requests"


def reply_key(request_id: str) -> str:
    return f"{prefix()}:reply:{request_id}"


def alive_key() -> str:
    return f"{prefix()}:alive"


def state_key(session: str) -> str:
    return f"{prefix()}:state:{session}"


def journal_keys(session: str) -> tuple[str, str]:
    """(orders: client order id -> last OrderStatus, fills: execution id -> Fill)."""
    return f"{prefix()}:orders:{session}", f"{prefix()}:fills:{session}"


def session_key(credentials: dict[str, Any]) -> str:
    """One session per IB account at one gateway: the account code when given, else the login's
    client id (a login without an account code has one account)."""
    who = credentials.get("account") or f"cid{credentials['client_id']}"
    raw = f"{credentials['host'].lower()}:{credentials['port']}:{who}"
    return hashlib.sha256(raw.encode()).hexdigest()[:16]


def credentials_fingerprint(credentials: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(credentials, sort_keys=True).encode()).hexdigest()
