"""PhillipBroker against the loopback server of phillip_server.py: real HTTP on 127.0.0.1."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import django
import pytest
from django.conf import settings
from django.test import override_settings

if not settings.configured:
    settings.configure()
    django.setup()

from brokers.domain import BrokerError, Instrument, OrderLeg, OrderRequest  # noqa: E402
from brokers.phillip import PhillipBroker, PhillipCredentialsSerializer  # noqa: E402
from brokers.tests.phillip_server import PhillipServer  # noqa: E402

CLIENT_ID = "desk-1"
SECRET = "s3cret-Value-!"
READ_TIMEOUT = 0.25
STALL = 0.8  # well past READ_TIMEOUT


@pytest.fixture
def server() -> Iterator[PhillipServer]:
    with PhillipServer(clients={CLIENT_ID: SECRET}) as running:
        yield running


def credentials(**overrides: Any) -> dict[str, Any]:
    return {
        "client_id": CLIENT_ID,
        "client_secret": SECRET,
        "request_retries": 3,
        "request_backoff_seconds": 0.01,
        "exchange": "CME",
        "currency": "USD",
        **overrides,
    }


def make_broker(default_base_url: str, **overrides: Any) -> PhillipBroker:
    serializer = PhillipCredentialsSerializer(data=credentials(**overrides))
    assert serializer.is_valid(), serializer.errors
    return PhillipBroker.from_credentials(
        serializer.validated_data,
        default_base_url=default_base_url,
        connect_timeout_seconds=1.0,
        read_timeout_seconds=READ_TIMEOUT,
    )


@pytest.fixture
def broker(server: PhillipServer) -> Iterator[PhillipBroker]:
    adapter = make_broker(server.base_url)
    yield adapter
    adapter.disconnect()


def es_option(strike: float, right: str = "C") -> Instrument:
    return Instrument(
        symbol="ES",
        sec_type="FOP",
        expiry=date(2026, 12, 18),
        exchange="CME",
        multiplier=50.0,
        strike=strike,
        right=right,
    )  # type: ignore[arg-type]


def limit_order(client_order_id: str, *legs: OrderLeg, price: float = 12.5) -> OrderRequest:
    return OrderRequest(client_order_id=client_order_id, legs=legs, order_type="LMT", limit_price=price)


def raised(call: Any, *args: Any, **kwargs: Any) -> BrokerError:
    with pytest.raises(BrokerError) as caught:
        call(*args, **kwargs)
    return caught.value


# -- tokens ----------------------------------------------------------------------------------------


def test_token_is_fetched_once_with_basic_auth_and_reused(
    server: PhillipServer, broker: PhillipBroker
) -> None:
    broker.positions()
    broker.account_summary()
    broker.positions()

    assert server.count("POST /oauth/token") == 1
    token_request = next(r for r in server.recorded if r.route == "POST /oauth/token")
    assert token_request.headers["authorization"].startswith("Basic ")
    assert token_request.body == b"grant_type=client_credentials"
    api_requests = [r for r in server.recorded if r.route != "POST /oauth/token"]
    assert {r.headers["authorization"] for r in api_requests} == {api_requests[0].headers["authorization"]}


def test_token_is_refreshed_shortly_before_it_expires() -> None:
    now = [1000.0]
    with PhillipServer(clients={CLIENT_ID: SECRET}, token_lifetime_seconds=100) as server:
        broker = PhillipBroker(
            base_url=server.base_url,
            client_id=CLIENT_ID,
            client_secret=SECRET,
            exchange="CME",
            currency="USD",
            read_timeout_seconds=READ_TIMEOUT,
            clock=lambda: now[0],
        )
        broker.positions()
        now[0] += 89.0  # inside the lifetime less its 10 s margin
        broker.positions()
        assert server.count("POST /oauth/token") == 1
        now[0] += 2.0
        broker.positions()
        assert server.count("POST /oauth/token") == 2


def test_401_refreshes_the_token_once_then_succeeds(server: PhillipServer, broker: PhillipBroker) -> None:
    broker.positions()
    server.expire_tokens()

    assert broker.positions() == []
    assert server.count("POST /oauth/token") == 2
    assert server.count("GET /positions") == 3


def test_401_after_a_refresh_is_a_final_auth_failure(server: PhillipServer, broker: PhillipBroker) -> None:
    server.fail("GET /positions", 401, times=2, code="invalid_token")

    error = raised(broker.positions)

    assert (error.code, error.retryable, error.operation) == ("auth_failed", False, "positions")
    assert server.count("POST /oauth/token") == 2
    assert server.count("GET /positions") == 2


def test_refused_credentials_are_auth_failed_and_not_retried(server: PhillipServer) -> None:
    broker = make_broker(server.base_url, client_secret="wrong-secret")

    error = raised(broker.connect)

    assert (error.code, error.retryable, error.context["status"]) == ("auth_failed", False, 401)
    assert "broker_code" not in error.context  # the server's words stay in the log
    assert server.count("POST /oauth/token") == 1


def test_token_endpoint_outage_is_retried(server: PhillipServer, broker: PhillipBroker) -> None:
    server.fail("POST /oauth/token", 503, times=2)

    broker.connect()

    assert server.count("POST /oauth/token") == 3


# -- retries ---------------------------------------------------------------------------------------


def test_read_timeouts_are_retried_with_the_same_request_id(
    server: PhillipServer, broker: PhillipBroker
) -> None:
    server.stall("GET /positions", seconds=STALL, times=2)

    assert broker.positions() == []
    attempts = [r for r in server.recorded if r.route == "GET /positions"]
    assert len(attempts) == 3
    assert len({r.headers["x-request-id"] for r in attempts}) == 1


def test_timeouts_exhausted_give_a_retryable_error(server: PhillipServer) -> None:
    broker = make_broker(server.base_url, request_retries=1)
    broker.connect()
    server.stall("GET /positions", seconds=STALL, times=None)

    error = raised(broker.positions)

    assert (error.code, error.retryable, error.context["attempts"]) == ("timeout", True, 2)
    assert server.count("GET /positions") == 2


def test_connection_refused_is_unavailable_and_retryable() -> None:
    with socket.socket() as bound_not_listening:
        bound_not_listening.bind(("127.0.0.1", 0))
        port = bound_not_listening.getsockname()[1]
        broker = make_broker(f"http://127.0.0.1:{port}/v1", request_retries=1)

        error = raised(broker.connect)

    assert (error.code, error.retryable, error.context["attempts"]) == ("unavailable", True, 2)


def test_429_waits_as_long_as_retry_after_says(server: PhillipServer) -> None:
    broker = make_broker(server.base_url, request_backoff_seconds=0)
    broker.connect()
    server.fail("GET /account/summary", 429, times=2, retry_after="0.2")

    assert broker.account_summary().currency == "USD"
    arrivals = [r.received_at for r in server.recorded if r.route == "GET /account/summary"]
    assert len(arrivals) == 3
    assert all(later - earlier >= 0.2 for earlier, later in zip(arrivals, arrivals[1:], strict=False))


def test_429_asking_for_too_long_a_wait_fails_at_once(server: PhillipServer, broker: PhillipBroker) -> None:
    server.fail("GET /positions", 429, times=None, retry_after="120")

    error = raised(broker.positions)

    assert (error.code, error.retryable) == ("rate_limited", True)
    assert error.context["retry_after_seconds"] == 120.0
    assert server.count("GET /positions") == 1


def test_5xx_then_success(server: PhillipServer, broker: PhillipBroker) -> None:
    server.fail("GET /positions", 500, times=2)

    assert broker.positions() == []
    assert server.count("GET /positions") == 3


def test_5xx_storm_exhausts_retries(server: PhillipServer) -> None:
    broker = make_broker(server.base_url, request_retries=2)
    server.fail("GET /positions", 503, times=None)

    error = raised(broker.positions)

    assert (error.code, error.retryable) == ("server_error", True)
    assert error.context["attempts"] == 3
    assert error.context["status"] == 503
    assert server.count("GET /positions") == 3


@pytest.mark.parametrize(
    ("status", "code"),
    [(400, "invalid_request"), (404, "not_found"), (422, "invalid_request"), (403, "forbidden")],
)
def test_4xx_are_not_retried(server: PhillipServer, broker: PhillipBroker, status: int, code: str) -> None:
    server.fail("GET /positions", status, times=None)

    error = raised(broker.positions)

    assert (error.code, error.retryable, error.context["status"]) == (code, False, status)
    assert server.count("GET /positions") == 1


@pytest.mark.parametrize(
    "body",
    [
        b"<html>gateway</html>",
        b'{"positions": [',
        b'{"positions": {}}',
        b'{"items": []}',
        b'{"positions": [{"instrument": {"instrument_id": "X"}, "quantity": 1, "average_price": 1.0}]}',
        b'{"positions": [], "next_cursor": 7}',
    ],
)
def test_malformed_bodies_are_not_retried(server: PhillipServer, broker: PhillipBroker, body: bytes) -> None:
    server.malformed("GET /positions", body, times=None)

    error = raised(broker.positions)

    assert (error.code, error.retryable) == ("malformed_response", False)
    assert server.count("GET /positions") == 1


def test_wrong_types_and_non_finite_numbers_are_malformed(
    server: PhillipServer, broker: PhillipBroker
) -> None:
    summary = {
        "currency": "USD",
        "net_liquidation": 1.0,
        "initial_margin": 1.0,
        "maintenance_margin": 1.0,
        "available_funds": 1.0,
    }
    server.malformed("GET /account/summary", json.dumps({**summary, "net_liquidation": "1.0"}).encode())
    assert raised(broker.account_summary).context["field"] == "net_liquidation"
    server.malformed(
        "GET /account/summary", json.dumps({**summary, "available_funds": float("nan")}).encode()
    )
    assert raised(broker.account_summary).code == "malformed_response"
    server.malformed("GET /account/summary", json.dumps({**summary, "currency": "EUR"}).encode())
    assert raised(broker.account_summary).context["field"] == "currency"


# -- orders ----------------------------------------------------------------------------------------


def test_a_lost_order_answer_is_retried_and_yields_exactly_one_order(
    server: PhillipServer, broker: PhillipBroker
) -> None:
    server.stall("POST /orders", seconds=STALL, times=1)  # recorded, then answered too late

    status = broker.place_order(limit_order("cycle-7-hedge-1", OrderLeg(es_option(6000.0), "BUY", 2)))

    assert server.count("POST /orders") == 2
    assert list(server.state.orders) == ["cycle-7-hedge-1"]
    assert status.broker_order_id == server.state.orders["cycle-7-hedge-1"]["order_id"]
    assert (status.state, status.remaining_quantity) == ("submitted", 2)
    posts = [r for r in server.recorded if r.route == "POST /orders"]
    assert posts[0].body == posts[1].body
    assert posts[0].headers["x-request-id"] == posts[1].headers["x-request-id"]


def test_unknown_order_outcome_is_retryable_and_resolved_by_client_id(server: PhillipServer) -> None:
    broker = make_broker(server.base_url, request_retries=1)
    server.stall("POST /orders", seconds=STALL, times=None)

    error = raised(broker.place_order, limit_order("cycle-8-1", OrderLeg(es_option(6050.0), "SELL", 1)))

    assert (error.code, error.retryable, error.context["outcome_unknown"]) == ("timeout", True, True)
    server.clear_faults()
    found = broker.order_status("cycle-8-1")
    assert found is not None and found.state == "submitted"
    assert len(server.state.orders) == 1


def test_resending_the_same_order_returns_the_existing_one(
    server: PhillipServer, broker: PhillipBroker
) -> None:
    order = limit_order("cycle-9-1", OrderLeg(es_option(6000.0), "BUY", 1))

    first = broker.place_order(order)
    second = broker.place_order(order)

    assert first.broker_order_id == second.broker_order_id
    assert len(server.state.orders) == 1


def test_same_client_order_id_with_another_body_is_a_conflict(
    server: PhillipServer, broker: PhillipBroker
) -> None:
    broker.place_order(limit_order("cycle-10-1", OrderLeg(es_option(6000.0), "BUY", 1)))

    error = raised(broker.place_order, limit_order("cycle-10-1", OrderLeg(es_option(6000.0), "BUY", 3)))

    assert (error.code, error.retryable) == ("duplicate_client_order_id", False)
    assert server.count("POST /orders") == 2


def test_an_invalid_order_is_rejected_without_retry(server: PhillipServer, broker: PhillipBroker) -> None:
    no_price = OrderRequest(client_order_id="cycle-11-1", legs=(OrderLeg(es_option(6000.0), "BUY", 1),))

    error = raised(broker.place_order, no_price)

    assert (error.code, error.retryable, error.context["status"]) == ("invalid_request", False, 422)
    assert server.count("POST /orders") == 1


def test_a_bad_client_order_id_never_reaches_the_server(server: PhillipServer, broker: PhillipBroker) -> None:
    error = raised(broker.place_order, limit_order("has space", OrderLeg(es_option(6000.0), "BUY", 1)))

    assert (error.code, error.retryable) == ("invalid_request", False)
    assert server.count("POST /orders") == 0


def test_order_status_by_client_id(server: PhillipServer, broker: PhillipBroker) -> None:
    assert broker.order_status("never-sent") is None
    broker.place_order(limit_order("cycle-12-1", OrderLeg(es_option(6000.0), "BUY", 4)))
    server.state.fill_order("cycle-12-1", units=1, leg_prices=[120.0])

    status = broker.order_status("cycle-12-1")

    assert status is not None
    assert (status.state, status.filled_quantity, status.remaining_quantity) == ("partially_filled", 1, 3)
    assert status.average_fill_price == 120.0
    assert status.time is not None and status.time.tzinfo is not None


def test_a_404_that_is_not_order_not_found_is_an_error_not_none(
    server: PhillipServer, broker: PhillipBroker
) -> None:
    server.fail("GET /orders/by-client-id/{id}", 404, code="no_such_route")

    error = raised(broker.order_status, "cycle-13-1")

    assert (error.code, error.retryable) == ("not_found", False)


def test_order_status_for_another_id_is_malformed(server: PhillipServer, broker: PhillipBroker) -> None:
    broker.place_order(limit_order("cycle-14-1", OrderLeg(es_option(6000.0), "BUY", 1)))
    other = json.dumps(server.state.order("cycle-14-1") | {"client_order_id": "cycle-14-2"}).encode()
    server.malformed("GET /orders/by-client-id/{id}", other)

    assert raised(broker.order_status, "cycle-14-1").context["field"] == "client_order_id"


def test_cancel(server: PhillipServer, broker: PhillipBroker) -> None:
    broker.place_order(limit_order("cycle-15-1", OrderLeg(es_option(6000.0), "BUY", 1)))
    broker.place_order(limit_order("cycle-15-2", OrderLeg(es_option(6000.0), "BUY", 1)))
    server.state.fill_order("cycle-15-2")

    assert broker.cancel_order("cycle-15-1").state == "cancelled"
    assert broker.cancel_order("cycle-15-1").state == "cancelled"
    assert raised(broker.cancel_order, "cycle-15-2").code == "order_not_cancellable"
    missing = raised(broker.cancel_order, "cycle-15-3")
    assert (missing.code, missing.retryable) == ("order_not_found", False)


# -- fills, positions, account ---------------------------------------------------------------------


def test_fills_since_follows_pages_and_filters_by_time() -> None:
    with PhillipServer(clients={CLIENT_ID: SECRET}, page_size=2) as server:
        broker = make_broker(server.base_url)
        spread = limit_order(
            "cycle-16-1",
            OrderLeg(es_option(6000.0), "BUY", 2),
            OrderLeg(es_option(6100.0), "SELL", 2),
            price=40.0,
        )
        broker.place_order(spread)
        early = datetime(2026, 11, 24, 14, 0, tzinfo=UTC)
        server.state.fill_order("cycle-16-1", units=1, leg_prices=[130.0, 88.0], at=early)
        server.state.fill_order(
            "cycle-16-1", units=1, leg_prices=[132.0, 90.0], at=early + timedelta(hours=1)
        )

        fills = broker.fills_since(early)
        later = broker.fills_since(early + timedelta(minutes=30))

        assert server.count("GET /fills") == 3  # two pages, then one
    assert [(f.side, f.quantity, f.price) for f in fills] == [
        ("BUY", 1, 130.0),
        ("SELL", 1, 88.0),
        ("BUY", 1, 132.0),
        ("SELL", 1, 90.0),
    ]
    assert len({f.fill_id for f in fills}) == 4
    assert fills[0].instrument.key == "ES FOP 20261218 6000 C"
    assert fills[0].commission == 2.25 and fills[0].client_order_id == "cycle-16-1"
    assert fills[0].time == early
    assert [f.price for f in later] == [132.0, 90.0]


def test_fills_since_refuses_a_naive_time(server: PhillipServer, broker: PhillipBroker) -> None:
    assert raised(broker.fills_since, datetime(2026, 11, 24)).code == "invalid_request"
    assert server.count("GET /fills") == 0


def test_positions_follow_fills(server: PhillipServer, broker: PhillipBroker) -> None:
    future = broker.lookup_instrument(symbol="ES", sec_type="FUT")
    broker.place_order(limit_order("cycle-17-1", OrderLeg(future, "SELL", 3), price=6000.0))
    server.state.fill_order("cycle-17-1", leg_prices=[6000.0])
    broker.place_order(limit_order("cycle-17-2", OrderLeg(es_option(5950.0, "P"), "BUY", 2), price=60.0))
    server.state.fill_order("cycle-17-2", leg_prices=[60.0])

    positions = {p.instrument.key: p for p in broker.positions()}

    assert {key: (p.quantity, p.average_price) for key, p in positions.items()} == {
        "ES FUT 20261218": (-3, 6000.0),
        "ES FOP 20261218 5950 P": (2, 60.0),
    }
    assert positions["ES FOP 20261218 5950 P"].instrument.multiplier == 50.0


def test_account_summary(server: PhillipServer, broker: PhillipBroker) -> None:
    summary = broker.account_summary()

    assert (summary.currency, summary.net_liquidation, summary.available_funds) == (
        "USD",
        1_250_000.0,
        1_166_000.0,
    )
    assert summary.unrealized_pnl is None
    assert server.recorded[-1].path.endswith("/account/summary")


# -- instruments and quotes ------------------------------------------------------------------------


def test_lookup_front_future_and_one_option(broker: PhillipBroker) -> None:
    front = broker.lookup_instrument(symbol="es", sec_type="FUT")
    option = broker.lookup_instrument(
        symbol="ES", sec_type="FOP", expiry=date(2026, 12, 18), strike=6050, right="P"
    )

    assert (front.expiry, front.exchange, front.broker_ref) == (date(2026, 12, 18), "CME", "ES-FUT-20261218")
    assert (option.strike, option.right, option.exercise_style) == (6050.0, "P", "american")
    assert option.underlying_expiry == date(2026, 12, 18)


def test_lookup_failures(broker: PhillipBroker) -> None:
    missing = raised(
        broker.lookup_instrument,
        symbol="ES",
        sec_type="FOP",
        expiry=date(2026, 12, 18),
        strike=1234.0,
        right="C",
    )
    ambiguous = raised(broker.lookup_instrument, symbol="ES", sec_type="FOP", expiry=date(2026, 12, 18))

    assert (missing.code, missing.retryable) == ("instrument_not_found", False)
    assert (ambiguous.code, ambiguous.retryable) == ("ambiguous_instrument", False)


def test_option_chain_follows_pages() -> None:
    with PhillipServer(clients={CLIENT_ID: SECRET}, page_size=3) as server:
        broker = make_broker(server.base_url)
        chain = broker.option_chain(broker.lookup_instrument(symbol="ES", sec_type="FUT"))
        assert server.count("GET /instruments") == 1 + 4  # the lookup, then 10 options in pages of 3
    assert len(chain) == 10
    assert {(o.strike, o.right) for o in chain} == {
        (float(k), r) for k in range(5900, 6101, 50) for r in "CP"
    }


def test_quotes_keep_order_and_resolve_instruments_without_ids(
    server: PhillipServer, broker: PhillipBroker
) -> None:
    server.state.set_quote("ES-FOP-20261218-6000-C", bid=None, ask=131.0)
    wanted = [es_option(6100.0), es_option(6000.0), es_option(6100.0)]

    quotes = broker.quotes(wanted)

    assert [q.instrument for q in quotes] == wanted
    assert quotes[1].bid is None and quotes[1].ask == 131.0 and quotes[1].mid is None
    greeks = quotes[0].greeks
    assert greeks is not None and greeks.source == "broker" and 0 < greeks.delta < 0.5
    assert quotes[0].underlying_price == 6000.0
    assert server.count("GET /quotes") == 1


def test_a_quote_missing_from_the_answer_is_malformed(server: PhillipServer, broker: PhillipBroker) -> None:
    server.malformed("GET /quotes", b'{"quotes": []}')

    assert raised(broker.quotes, [es_option(6000.0)]).code == "malformed_response"


# -- health ----------------------------------------------------------------------------------------


def test_health_reports_without_raising(server: PhillipServer, broker: PhillipBroker) -> None:
    assert broker.health().connected is True
    server.state.health_status = "degraded"
    assert broker.health().connected is False
    server.fail("GET /health", 503, times=None)
    down = broker.health()
    assert down.connected is False and down.detail.startswith("server_error")
    assert server.count("GET /health") == 3  # health never retries


# -- credentials and secrets -----------------------------------------------------------------------


@override_settings(BROKER_ALLOWED_HOSTS=["phillip.example"])
def test_credentials_are_normalised() -> None:
    serializer = PhillipCredentialsSerializer(
        data=credentials(exchange="nymex", currency="usd", base_url="https://phillip.example/v1/")
    )

    assert serializer.is_valid(), serializer.errors
    assert serializer.validated_data["exchange"] == "NYMEX"
    assert serializer.validated_data["currency"] == "USD"
    assert serializer.validated_data["base_url"] == "https://phillip.example/v1"
    assert "client_secret" not in serializer.data


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"client_id": ""}, "client_id"),
        ({"client_secret": "   "}, "client_secret"),
        ({"request_retries": 11}, "request_retries"),
        ({"request_retries": -1}, "request_retries"),
        ({"request_backoff_seconds": 30.5}, "request_backoff_seconds"),
        ({"exchange": "GLOBEX"}, "exchange"),
        ({"exchange": "LSE"}, "exchange"),
        ({"currency": "US"}, "currency"),
        ({"currency": "U5D"}, "currency"),
        ({"base_url": "ftp://phillip.example"}, "base_url"),
        ({"base_url": "not a url"}, "base_url"),
        ({"client_secert": "typo"}, "client_secert"),
    ],
)
def test_credentials_field_errors(overrides: dict[str, Any], field: str) -> None:
    serializer = PhillipCredentialsSerializer(data=credentials(**overrides))

    assert not serializer.is_valid()
    assert list(serializer.errors) == [field]


def test_missing_credentials_fields_are_each_reported() -> None:
    serializer = PhillipCredentialsSerializer(data={})

    assert not serializer.is_valid()
    assert set(serializer.errors) == {
        "client_id",
        "client_secret",
        "request_retries",
        "request_backoff_seconds",
        "exchange",
        "currency",
    }


def test_the_default_base_url_is_used_when_none_is_given(server: PhillipServer) -> None:
    broker = make_broker(server.base_url)
    explicit = make_broker("http://127.0.0.1:9/unused", base_url=server.base_url)

    assert server.base_url in repr(broker)
    assert explicit.positions() == []


def test_no_secret_in_errors_or_repr(server: PhillipServer) -> None:
    broker = make_broker(server.base_url, request_retries=0)
    broker.connect()
    token = next(iter(server.state.tokens))
    echo = json.dumps(
        {"error": {"code": "bad", "message": f"got secret {SECRET} and token {token}"}}
    ).encode()
    errors = []
    server.fail("GET /positions", 400, body=echo)
    errors.append(raised(broker.positions))
    server.fail("GET /positions", 500, body=echo)
    errors.append(raised(broker.positions))
    server.fail("GET /positions", 401, times=2, body=echo)
    errors.append(raised(broker.positions))
    errors.append(raised(make_broker(server.base_url, client_secret=SECRET + "x").connect))

    for error in errors:
        text = json.dumps(error.payload()) + repr(error) + str(error)
        assert SECRET not in text
        assert token not in text
    assert errors[0].message == "the broker refused the request (HTTP 400)"
    assert SECRET not in repr(broker) and token not in repr(broker)


def test_the_servers_own_words_are_logged_never_returned(
    server: PhillipServer, caplog: pytest.LogCaptureFixture
) -> None:
    """An owner may point base_url anywhere allowed: whatever answers there, its text (an internal
    service's banner, a stack trace) never comes back to the caller, only our code and a generic
    message; operators find it in the log by the request id."""
    broker = make_broker(server.base_url, request_retries=0)
    banner = "internal-admin v2.3 on 10.0.0.5: Traceback (most recent call last)"
    body = json.dumps({"error": {"code": "x-internal-banner", "message": banner}}).encode()
    errors = []
    with caplog.at_level("WARNING", logger="brokers.phillip"):
        for status in (400, 403, 404, 409, 500):
            server.fail("GET /positions", status, body=body)
            errors.append(raised(broker.positions))
        server.fail("POST /oauth/token", 401,
                    body=json.dumps({"error": "x-internal-banner", "error_description": banner}).encode())
        errors.append(raised(make_broker(server.base_url, request_retries=0).connect))
    for error in errors:
        text = json.dumps(error.payload()) + str(error)
        assert banner not in text and "x-internal-banner" not in text
        assert error.context["request_id"] in caplog.text
    assert [error.code for error in errors] == [
        "invalid_request", "forbidden", "not_found", "invalid_request", "server_error", "auth_failed"]
    assert banner in caplog.text and "x-internal-banner" in caplog.text


def test_a_tls_failure_is_not_echoed_either(caplog: pytest.LogCaptureFixture) -> None:
    import threading

    with socket.socket() as listener:  # answers a TLS hello in plain HTTP: the handshake fails
        listener.bind(("127.0.0.1", 0))
        listener.listen()

        def answer_in_clear() -> None:
            connection, _ = listener.accept()
            with connection:
                connection.recv(1024)
                connection.sendall(b"HTTP/1.1 400 Bad Request\r\nServer: internal-admin\r\n\r\n")

        thread = threading.Thread(target=answer_in_clear, daemon=True)
        thread.start()
        broker = make_broker(f"https://127.0.0.1:{listener.getsockname()[1]}", request_retries=0)
        with caplog.at_level("WARNING", logger="brokers.phillip"):
            error = raised(broker.connect)
        thread.join(5)
    assert (error.code, error.message) == ("tls_error", "the TLS handshake with the broker failed")
    assert "TLS failed" in caplog.text


def test_retry_log_lines_hold_no_secret(server: PhillipServer, caplog: pytest.LogCaptureFixture) -> None:
    broker = make_broker(server.base_url, request_retries=1)
    broker.connect()
    token = next(iter(server.state.tokens))
    server.fail("GET /positions", 503, times=1, body=f"secret {SECRET} token {token}".encode())

    with caplog.at_level("WARNING", logger="brokers.phillip"):
        assert broker.positions() == []

    assert "retrying" in caplog.text
    assert SECRET not in caplog.text and token not in caplog.text
