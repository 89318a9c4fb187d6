"""A dependency that is down is a 503 naming it, never a 500.

PostgreSQL unreachable (`django.db.OperationalError` / `InterfaceError`) is `database`; Redis
unreachable (`redis.ConnectionError` / `TimeoutError`, also as the cause of a Celery broker
error) is `redis`. HTTP answers 503 with `Retry-After` and `{"detail", "code":
"dependency_unavailable", "dependency"}` (a page for a browser), from the DRF exception handler,
from `DependencyUnavailableMiddleware` (Django views) and from `handler500` (a middleware's own
query, the session's say). A websocket is closed 1013 (try again later) by
`WebsocketOutageGuard`, before or after its handshake. No traceback is logged: one warning
naming the dependency and the error.

A request that waited as long as it may for a lock or a statement (tradingplatform.tasking's
bounds, `database_busy`) is not an outage but is answered the same way: 503 with Retry-After and
`{"detail", "code": "busy"}`.
"""
from __future__ import annotations

import logging
from typing import Any

import redis
from django.conf import settings
from django.db import InterfaceError, OperationalError
from django.http import HttpResponse, JsonResponse
from django.template.loader import render_to_string

from tradingplatform.tasking import database_busy

logger = logging.getLogger(__name__)

WS_CLOSE_TRY_AGAIN_LATER = 1013
DETAILS = {
    "database": "The database is unavailable. Try again shortly.",
    "redis": "Redis is unavailable. Try again shortly.",
    "broker": "The task queue is unavailable. Try again shortly.",
    # Not a dependency down: a lock or a statement past the request's bound (tradingplatform.tasking).
    "busy": ("The client's book is busy with another operation (an agent cycle, a book sync or an order), "
             "or the database is slow: the request waited as long as it may. Try again shortly."),
}


def unavailable_dependency(exc: BaseException | None) -> str | None:
    """The dependency whose outage `exc` is (or was caused by), or None for any other error."""
    seen: set[int] = set()
    broker = False
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OperationalError | InterfaceError):
            return "busy" if database_busy(exc) else "database"
        if isinstance(exc, redis.ConnectionError | redis.TimeoutError):
            return "redis"
        if type(exc).__module__.startswith("kombu") and type(exc).__name__ == "OperationalError":
            broker = True
        if type(exc).__module__.startswith("psycopg") and type(exc).__name__ == "OperationalError":
            return "database"
        exc = exc.__cause__ or exc.__context__
    return "broker" if broker else None


def outage_logged(dependency: str, exc: BaseException, where: str) -> None:
    message = "request busy" if dependency == "busy" else "dependency unavailable"
    logger.warning(message, extra={"dependency": dependency, "where": where,
                                   "error": f"{type(exc).__name__}: {exc}"[:300]})


def retry_after_seconds() -> int:
    return settings.OUTAGE_RETRY_AFTER_SECONDS


def outage_body(dependency: str) -> dict[str, str]:
    if dependency == "busy":
        return {"detail": DETAILS[dependency], "code": "busy"}
    return {"detail": DETAILS[dependency], "code": "dependency_unavailable", "dependency": dependency}


def outage_response(request: Any, dependency: str) -> HttpResponse:
    """The 503 for an HTTP request: a page for a browser (a desk page), JSON otherwise."""
    if "text/html" in request.headers.get("Accept", ""):
        # A page read is tried again by itself; a form sent is not sent again behind the trader's back.
        page = render_to_string("unavailable.html", {"dependency": dependency, "detail": DETAILS[dependency],
                                                     "retry_after": retry_after_seconds(),
                                                     "refresh": request.method in ("GET", "HEAD")})
        response = HttpResponse(page, status=503, content_type="text/html; charset=utf-8")
    else:
        response = JsonResponse(outage_body(dependency), status=503)
    response["Retry-After"] = str(retry_after_seconds())
    response._has_been_logged = True  # outage_logged said it once, as a warning: not again as an error
    return response


class DependencyUnavailableMiddleware:
    """A view that fails because a dependency is down answers 503, not 500."""

    def __init__(self, get_response: Any) -> None:
        self.get_response = get_response

    def __call__(self, request: Any) -> Any:
        return self.get_response(request)

    def process_exception(self, request: Any, exception: Exception) -> HttpResponse | None:
        dependency = unavailable_dependency(exception)
        if dependency is None:
            return None
        outage_logged(dependency, exception, request.path)
        return outage_response(request, dependency)


class WebsocketOutageGuard:
    """ASGI middleware around the websocket stack: a dependency down while a socket opens (the
    session, the token's user, the membership, the consumer's replay) or while it is open (the
    channel layer's Redis) closes it 1013 instead of an HTTP 500 or an abrupt drop."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> Any:
        if scope["type"] != "websocket":
            return await self.app(scope, receive, send)
        state = {"connect_received": False, "accepted": False, "closed": False}

        async def tracked_receive() -> dict:
            message = await receive()
            if message["type"] == "websocket.connect":
                state["connect_received"] = True
            elif message["type"] == "websocket.disconnect":
                state["closed"] = True
            return message

        async def tracked_send(message: dict) -> None:
            if message["type"] == "websocket.accept":
                state["accepted"] = True
            elif message["type"] == "websocket.close":
                state["closed"] = True
            await send(message)

        try:
            return await self.app(scope, tracked_receive, tracked_send)
        except Exception as exc:
            dependency = unavailable_dependency(exc)
            if dependency is None:
                raise
            outage_logged(dependency, exc, scope.get("path", ""))
            if state["closed"]:
                return None
            if not state["connect_received"] and (await receive())["type"] != "websocket.connect":
                return None
            if not state["accepted"]:
                await send({"type": "websocket.accept"})
            # Accepted then closed: a refusal before accept would reach the client as HTTP 403.
            await send({"type": "websocket.close", "code": WS_CLOSE_TRY_AGAIN_LATER})
            return None


# RFC 6455 close codes a server sends for its own condition (IANA registry): internal error,
# service restart, try again later, bad gateway.
SERVER_CLOSE_CODES = frozenset({1011, 1012, 1013, 1014})


def daphne_server_close_codes_allow() -> None:
    """Let daphne close a socket with 1013. daphne closes through autobahn's `sendClose`, which
    refuses any code but 1000 and 3000-4999 (it raised, and the socket was dropped with 1011);
    the server codes of the IANA registry are valid on the wire, so they go through the
    frame-level call that `sendClose` itself ends in. Idempotent; nothing without daphne."""
    try:
        from daphne.ws_protocol import WebSocketProtocol
    except ImportError:
        return
    original = WebSocketProtocol.serverClose
    if getattr(original, "server_codes_allowed", False):
        return

    def server_close(self, code=None):
        if code in SERVER_CLOSE_CODES:
            self.sendCloseFrame(code=code, isReply=False)
        else:
            original(self, code)

    server_close.server_codes_allowed = True
    WebSocketProtocol.serverClose = server_close
