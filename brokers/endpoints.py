"""Which broker endpoints the platform may call: an operator-set allowlist, so that an owner's
credentials (Phillip's `base_url`, IBKR's `host`/`port`) cannot make the server reach internal
addresses or scan ports.

Allowed: the host of PHILLIP_BASE_URL; every entry of BROKER_ALLOWED_HOSTS (`host`, `host:port`,
or `*.domain` for its subdomains; literal addresses must be listed as such); and loopback
addresses outside production (a local TWS or gateway in development and tests).
"""
from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from django.conf import settings

LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain"})


def _is_loopback(host: str) -> bool:
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _entry_matches(entry: str, host: str, port: int | None) -> bool:
    entry = entry.strip().lower()
    if not entry:
        return False
    entry_host, _, entry_port = entry.rpartition(":") if entry.count(":") == 1 else (entry, "", "")
    if entry_port:
        if not entry_port.isdigit() or port != int(entry_port):
            return False
    else:
        entry_host = entry
    entry_host = entry_host.strip("[]")
    if entry_host.startswith("*."):
        return host.endswith(entry_host[1:]) and host != entry_host[2:]
    return host == entry_host


def broker_endpoint_allowed(*, host: str, port: int | None = None) -> bool:
    host = (host or "").strip().lower().strip("[]").rstrip(".")
    if not host:
        return False
    if _is_loopback(host):
        return not settings.IS_PRODUCTION
    default_host = (urlsplit(settings.PHILLIP_BASE_URL).hostname or "").lower()
    if host == default_host:
        return True
    return any(_entry_matches(entry, host, port) for entry in settings.BROKER_ALLOWED_HOSTS)


ENDPOINT_REFUSED = "This broker endpoint is not on the platform's allowlist (BROKER_ALLOWED_HOSTS); ask an operator."
