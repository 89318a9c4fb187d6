"""Whose address a request comes from: the socket's, unless it comes through a proxy we trust.

`TRUSTED_PROXIES` (addresses or networks) names the reverse proxies in front of the platform. Only
a request whose socket address is one of them has its `X-Forwarded-For` believed, read from the
right (the proxy nearest us) and skipping further trusted proxies; anything else, a client that
writes its own header included, is judged by its socket address.
"""
from __future__ import annotations

import ipaddress
from functools import lru_cache
from typing import Any

from django.conf import settings


@lru_cache(maxsize=8)
def _networks(proxies: tuple[str, ...]) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return tuple(ipaddress.ip_network(proxy.strip(), strict=False) for proxy in proxies if proxy.strip())


def _is_trusted(address: str) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in _networks(tuple(settings.TRUSTED_PROXIES)))


def _valid(address: str) -> bool:
    try:
        ipaddress.ip_address(address)
    except ValueError:
        return False
    return True


def client_ip(request: Any) -> str:
    """The address to throttle and audit for this request (an HttpRequest or DRF Request)."""
    meta = request.META
    remote = meta.get("REMOTE_ADDR", "") or ""
    if not _is_trusted(remote):
        return remote
    forwarded = [part.strip() for part in meta.get("HTTP_X_FORWARDED_FOR", "").split(",") if part.strip()]
    for hop in reversed(forwarded):
        if not _valid(hop):
            return remote  # a malformed chain: believe only the socket
        if not _is_trusted(hop):
            return hop
    return forwarded[0] if forwarded and _valid(forwarded[0]) else remote
