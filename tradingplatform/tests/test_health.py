import socket

from django.test import override_settings


def test_liveness(api):
    assert api.get("/health").json() == {"status": "ok"}


def test_readiness_checks_database_redis_and_migrations(api, db):
    response = api.get("/health/ready")
    assert response.status_code == 200, response.content
    assert response.json()["checks"] == {"database": "ok", "redis": "ok", "migrations": "ok"}


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]  # nothing listens once the probe is closed


def test_readiness_is_503_and_names_redis_when_redis_is_down(api, db):
    with override_settings(REDIS_URL=f"redis://127.0.0.1:{_closed_port()}/0"):
        response = api.get("/health/ready")
    assert response.status_code == 503
    body = response.json()
    assert body["failing"] == ["redis"]
    assert body["checks"]["database"] == "ok"
    assert body["checks"]["redis"].startswith("failed: ConnectionError")


def test_unknown_paths_are_json_404(api, db):
    response = api.get("/no/such/page")
    assert response.status_code == 404
    assert response.json()["code"] == "not_found"


def test_openapi_schema_is_served(api, db):
    response = api.get("/api/schema/", HTTP_ACCEPT="application/json")
    assert response.status_code == 200
    assert "/clients/{client_id}/agent/status" in response.json()["paths"]
