"""Hostile input is a clear 4xx in the API's JSON shape, never a 500: deep nesting, NUL bytes in a
client id (URL and websocket path), oversized bodies."""
import json

import pytest
from asgiref.sync import async_to_sync
from channels.testing import WebsocketCommunicator
from django.test import override_settings
from rest_framework_simplejwt.tokens import AccessToken

from tradingplatform.asgi import application
from tradingplatform.testing import bearer

NESTED = "[" * 1000 + "]" * 1000


def _post_raw(api, path, body, **headers):
    return api.generic("POST", path, body, content_type="application/json", **headers)


def test_a_thousand_nested_brackets_at_login_is_400(api, db):
    response = _post_raw(api, "/auth/login", NESTED)
    assert response.status_code == 400
    assert response.json()["code"] == "parse_error"
    nested_in_a_field = _post_raw(api, "/auth/login", '{"username": ' + NESTED + ', "password": "x"}')
    assert nested_in_a_field.status_code == 400


def test_a_thousand_nested_brackets_in_the_parameters_is_400(api, alpha):
    body = '{"risk_limits": ' + "{\"a\": " * 1000 + "1" + "}" * 1000 + "}"
    assert _post_raw(api, "/clients/alpha/agent/parameters", body, **bearer(alpha.owner)).status_code == 400
    assert _post_raw(api, "/clients/alpha/agent/parameters", NESTED, **bearer(alpha.owner)).status_code == 400


def test_moderate_nesting_is_still_parsed(api, alpha):
    response = api.post("/clients/alpha/agent/parameters", {"risk_limits": {"max_net_delta": 5}}, format="json",
                        **bearer(alpha.owner))
    assert response.status_code == 200, response.content


@pytest.mark.parametrize("path", ["/clients/al%00pha/agent/status", "/clients/%00/positions",
                                  "/admin/clients/al%00pha/halt"])
def test_a_nul_byte_in_the_client_id_of_a_url_is_404(api, alpha, path, settings):
    response = api.get(path, HTTP_X_ADMIN_KEY=settings.ADMIN_API_KEY, **bearer(alpha.owner))
    assert response.status_code == 404
    assert response.json()["code"] == "not_found"


def test_a_nul_byte_in_the_query_string_is_400(api, alpha):
    response = api.get("/clients/alpha/agent/proposals?status=pend%00ing", **bearer(alpha.owner))
    assert response.status_code == 400


def test_a_nul_byte_in_the_client_id_of_a_websocket_path_is_closed_4404(alpha):
    token = AccessToken.for_user(alpha.viewer)

    async def run():
        communicator = WebsocketCommunicator(application, f"/clients/al\x00pha/stream?token={token}")
        await communicator.connect()
        message = await communicator.receive_output(timeout=5)
        await communicator.disconnect()
        return message

    message = async_to_sync(run)()
    assert message == {"type": "websocket.close", "code": 4404}


@override_settings(DATA_UPLOAD_MAX_MEMORY_SIZE=1024)
def test_an_oversized_body_answers_the_json_error(api, alpha):
    body = json.dumps({"username": "x" * 2000, "password": "y"})
    response = _post_raw(api, "/auth/login", body)
    assert response.status_code == 413
    assert response["Content-Type"].startswith("application/json")
    assert response.json()["code"] == "request_too_large"
    admin = api.generic("POST", "/admin/login/", "a=" + "x" * 2000, content_type="application/x-www-form-urlencoded")
    assert admin.status_code == 413 and admin.json()["code"] == "request_too_large"


def test_a_worker_imports_the_api_serializers_before_any_url_conf():
    """A Celery worker publishing a proposal imports the serializers, and so tradingplatform.api,
    without the URL conf loaded: the parser the settings name lives in a module of its own
    (tradingplatform.parsers), so rest_framework.views, which reads the setting while it is
    imported, never meets a half-initialized tradingplatform.api."""
    import os
    import subprocess
    import sys

    from django.conf import settings

    code = ("import django; django.setup(); import agents.serializers, risk.serializers; "
            "from rest_framework.views import APIView; print(APIView.parser_classes[0].__module__)")
    result = subprocess.run([sys.executable, "-c", code], cwd=settings.BASE_DIR, env=dict(os.environ),
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().endswith("tradingplatform.parsers")
