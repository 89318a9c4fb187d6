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
    return forwarded_client(meta.get("REMOTE_ADDR", "") or "", meta.get("HTTP_X_FORWARDED_FOR", ""))


def forwarded_client(remote: str, forwarded_for: str) -> str:
    """The client's address, given the socket's and the X-Forwarded-For header's."""
    if not _is_trusted(remote):
        return remote
    forwarded = [part.strip() for part in forwarded_for.split(",") if part.strip()]
    for hop in reversed(forwarded):
        if not _valid(hop):
            return remote  # a malformed chain: believe only the socket
        if not _is_trusted(hop):
            return hop
    return forwarded[0] if forwarded and _valid(forwarded[0]) else remote


class ProxyHeadersMiddleware:
    """ASGI: a connection from a trusted proxy gets the client address and scheme that proxy saw
    (X-Forwarded-For read as `client_ip` reads it, X-Forwarded-Proto), for HTTP and websockets
    alike. daphne's own --proxy-headers is not used: it believes the leftmost X-Forwarded-For
    entry, which the client writes, from anyone. Anything not from a trusted proxy is unchanged."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> Any:
        client = scope.get("client")
        if scope["type"] in {"http", "websocket"} and client and _is_trusted(client[0]):
            headers = {name.lower(): value.decode("latin-1") for name, value in scope.get("headers", [])}
            address = forwarded_client(client[0], headers.get(b"x-forwarded-for", ""))
            scope = dict(scope, client=[address, 0] if address != client[0] else client)
            proto = headers.get(b"x-forwarded-proto", "").split(",")[0].strip().lower()
            if proto in {"http", "https"}:
                secure = proto == "https"
                scope["scheme"] = ("https" if secure else "http") if scope["type"] == "http" else (
                    "wss" if secure else "ws")
        return await self.app(scope, receive, send)
