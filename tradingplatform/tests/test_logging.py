import json
import logging

from tradingplatform.logging import JsonFormatter, RequestContextFilter, log_context


def _line(record: logging.LogRecord) -> dict:
    RequestContextFilter().filter(record)
    return json.loads(JsonFormatter().format(record))


def test_log_lines_are_json_with_the_request_context():
    record = logging.LogRecord("trading", logging.WARNING, __file__, 1, "order rejected", None, None)
    with log_context(request_id="req-1", client_id="alpha", user="alpha-trader"):
        line = _line(record)
    assert {key: line[key] for key in ("level", "logger", "message", "request_id", "client_id", "user")} == {
        "level": "WARNING", "logger": "trading", "message": "order rejected", "request_id": "req-1",
        "client_id": "alpha", "user": "alpha-trader",
    }
    assert "time" in line


def test_every_response_carries_a_request_id_and_a_well_formed_one_is_kept(api, db):
    assert len(api.get("/health")["X-Request-ID"]) == 32
    assert api.get("/health", HTTP_X_REQUEST_ID="abc-123")["X-Request-ID"] == "abc-123"
    assert api.get("/health", HTTP_X_REQUEST_ID="bad id\\n")["X-Request-ID"] != "bad id\\n"


def test_a_failed_request_is_logged_with_its_request_id(api, db, caplog):
    with caplog.at_level(logging.WARNING, logger="django.request"):
        api.get("/clients/alpha/agent/status", HTTP_X_REQUEST_ID="trace-42")
    (record,) = [record for record in caplog.records if record.name == "django.request"]
    line = _line(record)  # as the stdout handler writes it: through the same filter and formatter
    assert line["request_id"] == "trace-42"
    assert line["request"] == "GET /clients/alpha/agent/status"
