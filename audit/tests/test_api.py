"""GET /clients/{client_id}/audit."""
from datetime import timedelta
from urllib.parse import parse_qs, urlparse

import pytest
from django.db import connection

from audit.rls import settings_read
from audit.tests.conftest import record
from tradingplatform.testing import bearer

FIELDS = {"sequence", "kind", "actor_type", "actor_id", "payload", "created_at", "hash"}


def _get(api, user, client_id="alpha", **params):
    return api.get(f"/clients/{client_id}/audit", params, **bearer(user))


def _probe_rows(client_id, count=3, kind="probe.event"):
    return [record(client_id, kind=kind, payload={"n": n}) for n in range(count)]


def test_a_viewer_reads_the_clients_rows_newest_first(api, alpha):
    written = _probe_rows("alpha")
    response = _get(api, alpha.viewer, kind="probe.event")
    assert response.status_code == 200
    body = response.json()
    assert [row["sequence"] for row in body["results"]] == [event.sequence for event in reversed(written)]
    first = body["results"][0]
    assert set(first) == FIELDS
    assert (first["payload"], first["hash"], first["actor_type"]) == ({"n": 2}, written[2].hash, "system")


def test_a_member_sees_only_their_own_clients_rows(api, alpha, beta):
    record("beta", kind="probe.secret", payload={"beta": "only"})
    record("alpha", kind="probe.mine")
    rows = _get(api, alpha.owner, limit=500).json()["results"]
    assert "probe.secret" not in {row["kind"] for row in rows}
    assert rows[0]["kind"] == "probe.mine"


def test_a_non_member_gets_404(api, alpha, beta):
    record("beta")
    response = _get(api, alpha.owner, client_id="beta")
    assert response.status_code == 404
    assert response.json()["code"] == "not_found"


def test_an_anonymous_caller_gets_401(api, alpha):
    assert api.get("/clients/alpha/audit").status_code == 401


def test_an_operator_reads_a_clients_rows(api, alpha, operator):
    record("alpha", kind="probe.for_operator")
    assert _get(api, operator, kind="probe.for_operator").json()["results"][0]["kind"] == "probe.for_operator"


def test_kind_filters_exactly_or_by_family(api, alpha):
    record("alpha", kind="probe.one")
    record("alpha", kind="probe.two")
    record("alpha", kind="probeextra.three")
    exact = [row["kind"] for row in _get(api, alpha.viewer, kind="probe.one").json()["results"]]
    assert exact == ["probe.one"]
    family = [row["kind"] for row in _get(api, alpha.viewer, kind="probe.*").json()["results"]]
    assert family == ["probe.two", "probe.one"]


def test_actor_type_filter(api, alpha):
    record("alpha", kind="probe.actor", actor_type="agent", actor_id="agent-1")
    record("alpha", kind="probe.actor", actor_type="user", actor_id="alpha-owner")
    rows = _get(api, alpha.viewer, kind="probe.actor", actor_type="agent").json()["results"]
    assert [row["actor_id"] for row in rows] == ["agent-1"]


def test_since_is_inclusive_and_until_exclusive(api, alpha):
    first, second, third = _probe_rows("alpha")
    window = {"since": second.created_at.isoformat(), "until": third.created_at.isoformat()}
    rows = _get(api, alpha.viewer, kind="probe.event", **window).json()["results"]
    assert [row["sequence"] for row in rows] == [second.sequence]
    later = (third.created_at + timedelta(microseconds=1)).isoformat()
    assert _get(api, alpha.viewer, kind="probe.event", since=later).json()["results"] == []


def test_pages_follow_the_cursor_without_overlap(api, alpha):
    written = _probe_rows("alpha", count=5, kind="probe.page")
    seen, url = [], "/clients/alpha/audit?kind=probe.page&limit=2"
    while url:
        body = api.get(url, **bearer(alpha.viewer)).json()
        assert len(body["results"]) <= 2
        seen += [row["sequence"] for row in body["results"]]
        url = body["next"]
    assert seen == [event.sequence for event in reversed(written)]


def test_a_new_event_does_not_shift_the_next_page(api, alpha):
    written = _probe_rows("alpha", count=4, kind="probe.stable")
    first_page = _get(api, alpha.viewer, kind="probe.stable", limit=2).json()
    record("alpha", kind="probe.stable")
    second_page = api.get(first_page["next"], **bearer(alpha.viewer)).json()
    assert [row["sequence"] for row in second_page["results"]] == [written[1].sequence, written[0].sequence]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"kind": "Risk Decision"}, "kind"),
        ({"kind": "risk"}, "kind"),
        ({"kind": "risk.*.x"}, "kind"),
        ({"actor_type": "robot"}, "actor_type"),
        ({"since": "yesterday"}, "since"),
        ({"until": "2026-13-01T00:00:00Z"}, "until"),
        ({"since": "2026-02-01T00:00:00Z", "until": "2026-01-01T00:00:00Z"}, "until"),
        ({"limit": "0"}, "limit"),
        ({"limit": "501"}, "limit"),
        ({"cursor": "not-a-cursor"}, "cursor"),
    ],
)
def test_bad_filters_are_400_with_field_errors(api, alpha, params, field):
    response = _get(api, alpha.viewer, **params)
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "invalid"
    assert field in body["errors"]


def test_the_request_leaves_the_connection_public_and_without_audit_settings(api, alpha):
    before = settings_read()
    assert _get(api, alpha.viewer).status_code == 200
    assert connection.schema_name == "public"
    assert settings_read() == before


def test_the_openapi_schema_documents_filters_and_cursor_pagination(api, db):
    schema = api.get("/api/schema/", {"format": "json"}).json()
    operation = schema["paths"]["/clients/{client_id}/audit"]["get"]
    names = {parameter["name"] for parameter in operation["parameters"]}
    assert {"client_id", "kind", "actor_type", "since", "until", "limit", "cursor"} <= names
    assert sorted(names).count("limit") == 1
    response = operation["responses"]["200"]["content"]["application/json"]["schema"]
    page = schema["components"]["schemas"][response["$ref"].rsplit("/", 1)[1]]
    assert {"next", "previous", "results"} <= set(page["properties"])


def test_next_links_keep_the_filters(api, alpha):
    _probe_rows("alpha", count=3, kind="probe.keep")
    next_url = _get(api, alpha.viewer, kind="probe.keep", limit=1).json()["next"]
    assert parse_qs(urlparse(next_url).query)["kind"] == ["probe.keep"]
