"""Tenant resolution for HTTP (every client route) and websockets (the ASGI middleware)."""
import json

import pytest
from asgiref.sync import async_to_sync
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from channels.testing import WebsocketCommunicator
from django.urls import URLPattern, URLResolver, get_resolver
from rest_framework_simplejwt.tokens import AccessToken, RefreshToken

from tenants.resolution import TenantWebsocketMiddleware
from tradingplatform.testing import bearer

SAMPLE_KWARGS = {"trade_id": "1", "proposal_id": "1"}


def _client_routes() -> list[tuple[str, str]]:
    """(path template, method) for every route under /clients/<client_id>/, found from the URLconf
    so that a route added later is covered without editing this test."""
    routes = []

    def walk(patterns, prefix):
        for entry in patterns:
            route = prefix + str(entry.pattern)
            if isinstance(entry, URLResolver):
                walk(entry.url_patterns, route)
            elif isinstance(entry, URLPattern) and route.startswith("/clients/<str:client_id>/"):
                view = getattr(entry.callback, "view_class", None) or getattr(entry.callback, "cls", None)
                for method in ("get", "post", "put", "patch", "delete"):
                    if view is not None and hasattr(view, method):
                        routes.append((route, method))

    walk(get_resolver().url_patterns, "/")
    return routes


CLIENT_ROUTES = _client_routes()


def _url(route: str, client_id: str) -> str:
    url = route.replace("<str:client_id>", client_id)
    for name, value in SAMPLE_KWARGS.items():
        url = url.replace(f"<int:{name}>", value).replace(f"<str:{name}>", value).replace(f"<uuid:{name}>", value)
    return url


def test_the_matrix_covers_routes():
    assert ("/clients/<str:client_id>/agent/status", "get") in CLIENT_ROUTES


@pytest.mark.parametrize(("route", "method"), CLIENT_ROUTES)
def test_a_member_of_another_client_gets_404(api, alpha, beta, route, method):
    response = getattr(api, method)(_url(route, "beta"), {}, format="json", **bearer(alpha.owner))
    assert response.status_code == 404
    assert response.json()["code"] == "not_found"


@pytest.mark.parametrize(("route", "method"), CLIENT_ROUTES)
def test_a_nonexistent_client_gets_the_same_404(api, alpha, route, method):
    response = getattr(api, method)(_url(route, "no-such-client"), {}, format="json", **bearer(alpha.owner))
    assert response.status_code == 404
    assert response.json() == {"detail": "Not found.", "code": "not_found"}


@pytest.mark.parametrize(("route", "method"), CLIENT_ROUTES)
def test_an_anonymous_caller_gets_401(api, alpha, route, method):
    assert getattr(api, method)(_url(route, "alpha"), {}, format="json").status_code == 401


def test_operators_read_any_client(api, alpha, operator):
    assert api.get("/clients/alpha/agent/status", **bearer(operator)).status_code == 200


def test_the_view_runs_in_the_client_schema_and_the_connection_returns_to_public(api, alpha):
    from django.db import connection

    response = api.get("/clients/alpha/agent/status", **bearer(alpha.viewer))
    assert response.json()["client_id"] == "alpha"
    assert connection.schema_name == "public"


# --- websockets -------------------------------------------------------------------------------


class EchoScope(AsyncJsonWebsocketConsumer):
    """A stand-in consumer that reports what the middleware resolved."""

    async def connect(self):
        await self.accept(self.scope.get("ws_subprotocol"))
        access = self.scope["client_access"]
        await self.send_json({"client_id": access.client.client_id, "role": access.role,
                              "user": self.scope["user"].username})


APP = TenantWebsocketMiddleware(EchoScope.as_asgi())


def _handshake(path: str, subprotocols: list[str] | None = None) -> tuple[bool, object, object]:
    """Connect, then read the first message; returns (accepted, first message, close code)."""

    async def run():
        communicator = WebsocketCommunicator(APP, path, subprotocols=subprotocols)
        connected, subprotocol = await communicator.connect()
        if not connected:
            return False, None, subprotocol
        message = await communicator.receive_output()
        await communicator.disconnect()
        if message["type"] == "websocket.close":
            return True, None, message["code"]
        return True, message, subprotocol

    return async_to_sync(run)()


def test_websocket_member_with_query_token_is_resolved(alpha):
    token = AccessToken.for_user(alpha.trader)
    accepted, message, _ = _handshake(f"/clients/alpha/stream?token={token}")
    assert accepted
    assert json.loads(message["text"]) == {"client_id": "alpha", "role": "trader", "user": "alpha-trader"}


def test_websocket_token_in_the_subprotocol_header(alpha):
    token = str(AccessToken.for_user(alpha.viewer))
    accepted, message, subprotocol = _handshake("/clients/alpha/stream", subprotocols=["bearer", token])
    assert json.loads(message["text"])["role"] == "viewer"
    assert subprotocol == "bearer"


@pytest.mark.parametrize(
    ("path_client", "token_kind", "close_code"),
    [
        ("beta", "alpha-owner", 4404),  # member of another client
        ("no-such-client", "alpha-owner", 4404),  # nonexistent: the same answer
        ("alpha", None, 4401),  # no token
        ("alpha", "garbage", 4401),  # not a token
        ("alpha", "refresh", 4401),  # a refresh token is not an access token
        ("alpha", "expired", 4401),
    ],
)
def test_websocket_refusals_close_with_a_reason_code(alpha, beta, path_client, token_kind, close_code):
    from datetime import timedelta

    if token_kind == "alpha-owner":
        token = str(AccessToken.for_user(alpha.owner))
    elif token_kind == "refresh":
        token = str(RefreshToken.for_user(alpha.owner))
    elif token_kind == "expired":
        expired = AccessToken.for_user(alpha.owner)
        expired.set_exp(lifetime=-timedelta(seconds=1))
        token = str(expired)
    else:
        token = token_kind
    path = f"/clients/{path_client}/stream" + (f"?token={token}" if token else "")
    accepted, message, code = _handshake(path)
    assert message is None
    assert code == close_code


def test_websocket_outside_a_client_path_is_refused(alpha):
    token = AccessToken.for_user(alpha.owner)
    assert _handshake(f"/stream?token={token}")[2] == 4404
