"""Tenant resolution, written once for HTTP and for websockets.

Both paths take the client id from the URL (`/clients/{client_id}/...`), authenticate the access
token, and ask `client_access_get` whether this user may see this client. A nonexistent client and
one the user is not a member of give the same answer (HTTP 404, websocket close 4404).
"""
from __future__ import annotations

import contextlib
import re
from typing import Any
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from django.contrib.auth.models import AnonymousUser
from django.contrib.auth.views import redirect_to_login
from django.db import connection
from django.shortcuts import render
from django.views import View
from rest_framework import exceptions
from rest_framework.request import Request
from rest_framework.views import APIView
from rest_framework_simplejwt.authentication import JWTAuthentication
from rest_framework_simplejwt.exceptions import InvalidToken, TokenError

from audit.rls import rls_context
from tenants.mfa import mfa_missing_reason, session_used_second_factor, token_used_second_factor
from tenants.models import Membership
from tenants.permissions import MfaRequired
from tenants.selectors import ClientAccess, client_access_get
from tradingplatform.logging import client_id_var, user_var

CLIENT_PATH = re.compile(r"^/clients/(?P<client_id>[^/]+)/")
WS_CLOSE_UNAUTHENTICATED = 4401
WS_CLOSE_FORBIDDEN = 4403
WS_CLOSE_NOT_FOUND = 4404
WS_TOKEN_SUBPROTOCOL = "bearer"


@contextlib.contextmanager
def client_scope(access: ClientAccess, *, username: str) -> Any:
    """Run the body on the client's schema, with the database's own guard on shared tables
    (row-level security on the audit trail) following the same client, and the log context
    naming both; back on the public schema afterwards whatever happens. Used by the API's and
    the desk's client-scoped views alike."""
    client_id_var.set(access.client.client_id)
    user_var.set(username)
    connection.set_tenant(access.client)
    try:
        with rls_context(client_id=access.client.client_id, is_admin=False):
            yield access
    finally:
        connection.set_schema_to_public()


def request_used_second_factor(request: Any) -> bool:
    """Whether the API caller's access token came from a login with a second factor."""
    return token_used_second_factor(getattr(request, "auth", None))


class ClientScopedAPIView(APIView):
    """Base of every `/clients/{client_id}/...` view.

    Anonymous callers get 401, non-members and unknown clients 404, members below
    `required_role` 403. The view body runs with the connection on the client's schema, and
    the connection goes back to the public schema afterwards whatever happens.
    """

    required_role: str = Membership.Role.VIEWER

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        super().initial(request, *args, **kwargs)
        access = client_access_get(user=request.user, client_id=kwargs["client_id"])
        if access is None:
            raise exceptions.NotFound()
        if not access.allows(self.required_role):
            raise exceptions.PermissionDenied(f"This needs the {self.required_role} role on this client.")
        if reason := mfa_missing_reason(user=request.user, verified=request_used_second_factor(request),
                                        client=access.client):
            raise MfaRequired(reason)
        request.client_access = access
        self._database_scope.enter_context(client_scope(access, username=request.user.get_username()))

    def dispatch(self, request: Any, *args: Any, **kwargs: Any) -> Any:
        self._database_scope = contextlib.ExitStack()
        try:
            return super().dispatch(request, *args, **kwargs)
        finally:
            self._database_scope.close()
            connection.set_schema_to_public()

    @property
    def client_access(self) -> ClientAccess:
        return self.request.client_access


class ClientScopedPageView(View):
    """The desk's twin of ClientScopedAPIView for session-authenticated pages under
    `/desk/{client_id}/`: anonymous visitors go to the login page, non-members and unknown clients
    see the same 404 page, members below `required_role` a 403 page; the view body (and its
    template, rendered inside: use `render`, not a lazy TemplateResponse) runs on the client's
    schema."""

    required_role: str = Membership.Role.VIEWER
    not_found_template = "desk/not_found.html"

    def dispatch(self, request: Any, *args: Any, **kwargs: Any) -> Any:
        if not request.user.is_authenticated:
            return redirect_to_login(request.get_full_path())
        access = client_access_get(user=request.user, client_id=kwargs["client_id"])
        if access is None:
            return render(request, self.not_found_template, status=404)
        if not access.allows(self.required_role):
            return render(request, "desk/forbidden.html", {"required_role": self.required_role}, status=403)
        if reason := mfa_missing_reason(user=request.user, verified=session_used_second_factor(request.session,
                                                                                                 request.user),
                                        client=access.client):
            return render(request, "desk/mfa_required.html", {"reason": reason, "code": "mfa_required"},
                          status=403)
        request.client_access = access
        with client_scope(access, username=request.user.get_username()):
            return super().dispatch(request, *args, **kwargs)

    @property
    def client_access(self) -> ClientAccess:
        return self.request.client_access


def _token_from_scope(scope: dict) -> tuple[str | None, str | None]:
    """The access token from `?token=` or from `Sec-WebSocket-Protocol: bearer, <token>`, and the
    subprotocol to accept with."""
    query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
    if query.get("token"):
        return query["token"][0], None
    subprotocols = scope.get("subprotocols") or []
    if len(subprotocols) >= 2 and subprotocols[0].lower() == WS_TOKEN_SUBPROTOCOL:
        return subprotocols[1], subprotocols[0]
    return None, None


def _authenticate(raw_token: str) -> tuple[Any, Any]:
    """The user and validated token of `raw_token`, or (AnonymousUser, None): a bad signature, an
    expired token, an inactive user or a password changed since the token was issued."""
    authentication = JWTAuthentication()
    try:
        validated = authentication.get_validated_token(raw_token)
        user = authentication.get_user(validated)
    except (InvalidToken, TokenError, exceptions.AuthenticationFailed):
        return AnonymousUser(), None
    if not user.is_active:
        return AnonymousUser(), None
    return user, validated


@database_sync_to_async
def _authenticate_and_resolve(raw_token: str, client_id: str) -> tuple[Any, ClientAccess | None, Any]:
    user, validated = _authenticate(raw_token)
    if not user.is_authenticated:
        return user, None, None
    return user, client_access_get(user=user, client_id=client_id), validated


def _session_user(session_key: str) -> tuple[Any, Any]:
    """The user a desk page's session still stands for, or AnonymousUser: the session was ended
    (logout), the user deactivated, or the password changed since the login (Django's session
    auth hash no longer matches); and the session."""
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY, get_user_model
    from django.contrib.sessions.backends.db import SessionStore
    from django.utils.crypto import constant_time_compare

    if not session_key:
        return AnonymousUser(), None
    session = SessionStore(session_key=session_key)
    if not session.exists(session_key) or SESSION_KEY not in session or BACKEND_SESSION_KEY not in session:
        return AnonymousUser(), None
    user = get_user_model().objects.filter(pk=session[SESSION_KEY], is_active=True).first()
    if user is None or not constant_time_compare(session.get(HASH_SESSION_KEY, ""), user.get_session_auth_hash()):
        return AnonymousUser(), None
    return user, session


def _stream_mfa_refused(*, user: Any, access: ClientAccess, validated: Any = None, session: Any = None) -> bool:
    """Whether a stream must be refused for want of a second factor (the client's policy, or an
    operator while MFA_REQUIRED_FOR_STAFF): the token's `amr`, or the session's verified device."""
    verified = token_used_second_factor(validated) if validated is not None else session_used_second_factor(
        session, user)
    return mfa_missing_reason(user=user, verified=verified, client=access.client) is not None


def stream_access_verdict(*, raw_token: str, client_id: str, required_role: str = Membership.Role.VIEWER,
                          session_key: str = "") -> int | None:
    """For an open websocket, re-asked every WS_REAUTH_SECONDS: None while its token (or, for a
    desk page, its session) and access still hold, else the close code (4401: the token expired,
    the session ended, the user was deactivated or changed password; 4404: no longer a member, or
    the role no longer allows the stream)."""
    validated, session = None, None
    if raw_token:
        user, validated = _authenticate(raw_token)
    else:
        user, session = _session_user(session_key)
    if not user.is_authenticated:
        return WS_CLOSE_UNAUTHENTICATED
    access = client_access_get(user=user, client_id=client_id)
    if access is None or not access.allows(required_role):
        return WS_CLOSE_NOT_FOUND
    if _stream_mfa_refused(user=user, access=access, validated=validated, session=session):
        return WS_CLOSE_FORBIDDEN
    return None


@database_sync_to_async
def _resolve_member(user: Any, client_id: str) -> ClientAccess | None:
    return client_access_get(user=user, client_id=client_id)


_stream_mfa_refused_async = database_sync_to_async(
    lambda user, access, validated, session: _stream_mfa_refused(user=user, access=access, validated=validated,
                                                                 session=session))


def _same_origin(scope: dict) -> bool:
    """The handshake's Origin names the host it was sent to (a browser always sends Origin)."""
    headers = dict(scope.get("headers") or [])
    origin, host = headers.get(b"origin", b"").decode("latin-1"), headers.get(b"host", b"").decode("latin-1")
    return bool(origin) and bool(host) and origin.split("://", 1)[-1] == host


async def _deny(send: Any, receive: Any, code: int) -> None:
    """Accept then close with an application code: a refusal before accept would reach the client
    only as HTTP 403, losing the reason."""
    message = await receive()
    if message["type"] != "websocket.connect":
        return
    await send({"type": "websocket.accept"})
    await send({"type": "websocket.close", "code": code})


class TenantWebsocketMiddleware:
    """ASGI middleware for websockets under `/clients/{client_id}/`.

    It puts `user`, `client_access` and `ws_subprotocol` in the scope. It does not switch the
    database connection: consumers run their queries inside `tenant_context(client)` in the sync
    function itself, because async code may run on another thread's connection.
    """

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> Any:
        if scope["type"] != "websocket":
            return await self.app(scope, receive, send)
        match = CLIENT_PATH.match(scope.get("path", ""))
        if match is None:
            return await _deny(send, receive, WS_CLOSE_NOT_FOUND)
        raw_token, subprotocol = _token_from_scope(scope)
        if raw_token is None:
            # A desk page: its session (set by channels' AuthMiddleware around this one), but only
            # from a page of this site, so another site cannot open a socket with the cookie.
            user = scope.get("user") or AnonymousUser()
            if not user.is_authenticated or not _same_origin(scope):
                return await _deny(send, receive, WS_CLOSE_UNAUTHENTICATED)
            access = await _resolve_member(user, match["client_id"])
            if access is None:
                return await _deny(send, receive, WS_CLOSE_NOT_FOUND)
            session = scope.get("session")
            if await _stream_mfa_refused_async(user, access, None, session):
                return await _deny(send, receive, WS_CLOSE_FORBIDDEN)
            scope = dict(scope, client_access=access, ws_subprotocol=None, ws_token="",
                         ws_session_key=getattr(session, "session_key", None) or "")
            return await self.app(scope, receive, send)
        user, access, validated = await _authenticate_and_resolve(raw_token, match["client_id"])
        if not user.is_authenticated:
            return await _deny(send, receive, WS_CLOSE_UNAUTHENTICATED)
        if access is None:
            return await _deny(send, receive, WS_CLOSE_NOT_FOUND)
        if await _stream_mfa_refused_async(user, access, validated, None):
            return await _deny(send, receive, WS_CLOSE_FORBIDDEN)
        scope = dict(scope, user=user, client_access=access, ws_subprotocol=subprotocol, ws_token=raw_token)
        return await self.app(scope, receive, send)
