"""Connect a broker, read positions and trades: through HTTP, on the simulated market."""
import json

import pytest
from django.core.cache import cache
from django.db import connection
from django.test import override_settings
from django.utils import timezone
from django_tenants.utils import tenant_context

from brokers.domain import OrderLeg, OrderRequest
from brokers.models import BrokerConnection
from brokers.services import broker_session, option_chain_cache_key
from risk.services import Actor, order_submit
from tradingplatform.testing import bearer, fernet_keys_use

IBKR = {"host": "127.0.0.1", "port": 7497, "client_id": 7, "underlying_instrument": "ES",
        "underlying_expiry": "202612"}
PHILLIP = {"client_id": "desk-7", "client_secret": "s3cr3t-value-never-shown", "request_retries": 2,
           "request_backoff_seconds": 0.1, "exchange": "CME", "currency": "USD"}


def _connect(api, fixture, body, user=None):
    return api.post(f"/clients/{fixture.client_id}/connect-broker", body, format="json",
                    **bearer(user or fixture.owner))


def test_owner_connects_the_mock_broker(api, alpha):
    response = _connect(api, alpha, {"broker": "mock", "credentials": {"seed": 7}})
    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["broker"], body["routed_to"], body["status"], body["connected"]) == ("mock", "mock", "connected", True)
    assert body["error"] is None


def test_with_the_mock_switch_on_a_real_broker_is_stored_but_routed_to_the_simulator(api, alpha):
    response = _connect(api, alpha, {"broker": "phillip", "credentials": PHILLIP})
    body = response.json()
    assert (body["broker"], body["routed_to"], body["status"]) == ("phillip", "mock", "connected")
    assert "s3cr3t" not in response.content.decode()


def test_credentials_are_encrypted_at_rest(api, alpha):
    _connect(api, alpha, {"broker": "phillip", "credentials": PHILLIP})
    with tenant_context(alpha.client):
        with connection.cursor() as cursor:
            cursor.execute("SELECT credentials FROM brokers_brokerconnection")
            (raw,) = cursor.fetchone()
        assert b"s3cr3t-value-never-shown" not in bytes(raw)
        assert b"desk-7" not in bytes(raw)
        assert "s3cr3t-value-never-shown" in BrokerConnection.objects.get().credentials  # decrypts


@override_settings(USE_MOCK_BROKER=False)
def test_a_failing_connection_is_stored_as_failed_with_a_structured_error(api, alpha):
    closed_port = {**IBKR, "port": 1, "connect_retries": 0, "connect_backoff_seconds": 0}
    response = _connect(api, alpha, {"broker": "ibkr", "credentials": closed_port})
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "failed" and body["connected"] is False
    assert body["error"]["type"] == "broker_error"
    assert body["error"]["broker"] == "ibkr"
    assert body["error"]["retryable"] is True


@pytest.mark.parametrize(
    ("body", "error_path"),
    [
        ({"broker": "ibkr", "credentials": {**IBKR, "port": 70000}}, ("credentials", "port")),
        ({"broker": "ibkr", "credentials": {k: v for k, v in IBKR.items() if k != "host"}}, ("credentials", "host")),
        ({"broker": "phillip", "credentials": {**PHILLIP, "client_secret": ""}}, ("credentials", "client_secret")),
        ({"broker": "phillip", "credentials": {**PHILLIP, "exchange": "GLOBEX"}}, ("credentials", "exchange")),
        ({"broker": "mock", "credentials": {"seed": -1}}, ("credentials", "seed")),
        ({"broker": "schwab", "credentials": {}}, ("broker",)),
    ],
)
def test_invalid_credentials_are_400_and_change_nothing(api, alpha, body, error_path):
    response = _connect(api, alpha, body)
    assert response.status_code == 400
    errors = response.json()["errors"]
    for key in error_path:
        errors = errors[key]
    assert errors
    with tenant_context(alpha.client):
        assert not BrokerConnection.objects.exists()
    assert "s3cr3t" not in response.content.decode()


@pytest.mark.parametrize("role", ["trader", "viewer"])
def test_only_owners_connect_brokers(api, alpha, role):
    assert _connect(api, alpha, {"broker": "mock"}, user=getattr(alpha, role)).status_code == 403


def _trade(fixture, legs, client_order_id):
    with tenant_context(fixture.client):
        return order_submit(client=fixture.client, order=OrderRequest(client_order_id=client_order_id, legs=legs,
                                                                      order_type="MKT"),
                            actor=Actor("user", "test"))


def _instruments(fixture):
    with tenant_context(fixture.client), broker_session() as broker:
        future = broker.lookup_instrument(symbol="ES", sec_type="FUT")
        chain = broker.option_chain(future)
        quote = broker.quote(future)
    call = min((o for o in chain if o.right == "C" and o.expiry == future.expiry),
               key=lambda o: abs(o.strike - quote.mid))
    return future, call


def test_positions_show_legs_greeks_and_net_delta(api, alpha):
    future, call = _instruments(alpha)
    result = _trade(alpha, (OrderLeg(call, "BUY", 2), OrderLeg(future, "SELL", 1)), "t-positions-1")
    assert result.accepted, result.decision.as_dict()

    body = api.get("/clients/alpha/positions", **bearer(alpha.viewer)).json()
    legs = {leg["instrument"]["key"]: leg for leg in body["legs"]}
    assert legs[call.key]["quantity"] == 2 and legs[future.key]["quantity"] == -1
    option_greeks = legs[call.key]["greeks"]
    # The default delta model, sticky-moneyness: the broker's delta plus vega x dsigma/dF from the
    # smile the book sync fitted to the chain's quotes around the money.
    assert option_greeks["source"] == "broker+smile"
    assert option_greeks["delta_model"] == "sticky_moneyness" and option_greeks["delta_note"] is None
    assert 0.3 < option_greeks["delta"] < 0.7
    assert option_greeks["implied_vol"] > 0
    expected = 2 * option_greeks["delta"] - 1
    (es,) = body["net_greeks"]
    assert es["underlying"] == "ES" and es["delta_model"] == "sticky_moneyness"
    assert es["delta"] == pytest.approx(expected, abs=1e-9)
    assert legs[call.key]["greeks"]["delta_contracts"] == pytest.approx(2 * option_greeks["delta"])
    assert legs[call.key]["quote_time"] is not None


def test_the_simulated_markets_chain_goes_through_the_cache_of_listings_too(alpha):
    future, call = _instruments(alpha)
    assert _trade(alpha, (OrderLeg(call, "BUY", 1),), "t-chain-cache").accepted  # its book syncs list the chain
    with tenant_context(alpha.client):
        stored = cache.get(option_chain_cache_key(broker="mock", future=call.underlying_future(),
                                                 day=timezone.now().date()))
    listed = {option["strike"] for option in json.loads(stored)["options"]
              if option["expiry"] == call.expiry.isoformat()}
    assert call.strike in listed and len(listed) > 1


def test_trades_newest_first_and_paginated(api, alpha):
    future, _ = _instruments(alpha)
    for number, side in enumerate(["BUY", "SELL", "BUY"]):
        assert _trade(alpha, (OrderLeg(future, side, 1 + number),), f"t-trades-{number}").accepted
    page = api.get("/clients/alpha/trades?limit=2", **bearer(alpha.viewer)).json()
    assert page["count"] == 3
    assert [row["client_order_id"] for row in page["results"]] == ["t-trades-2", "t-trades-1"]
    rest = api.get(page["next"], **bearer(alpha.viewer)).json()
    assert [row["client_order_id"] for row in rest["results"]] == ["t-trades-0"]


def test_the_book_of_one_client_is_not_the_book_of_another(api, alpha, beta):
    future, _ = _instruments(alpha)
    assert _trade(alpha, (OrderLeg(future, "BUY", 1),), "t-iso-1").accepted
    assert api.get("/clients/beta/positions", **bearer(beta.viewer)).json()["legs"] == []
    assert api.get("/clients/beta/trades", **bearer(beta.viewer)).json()["count"] == 0


def test_rotating_keys_re_encrypts_every_credential_under_the_newest_key(api, alpha, settings):
    from cryptography.fernet import InvalidToken
    from django.core.management import call_command

    def use_keys(keys):
        fernet_keys_use(settings, keys, BrokerConnection)

    old_keys = list(settings.FERNET_KEYS)
    try:
        _connect(api, alpha, {"broker": "phillip", "credentials": PHILLIP})
        use_keys(["the-new-key", *old_keys])
        call_command("rotate_broker_credentials", stdout=open("/dev/null", "w"))
        use_keys(["the-new-key"])  # the old key is gone: everything must decrypt with the new one
        with tenant_context(alpha.client):
            assert "desk-7" in BrokerConnection.objects.get().credentials
        use_keys(old_keys)  # and the old key alone no longer opens it
        with tenant_context(alpha.client), pytest.raises(InvalidToken):
            BrokerConnection.objects.get()
    finally:
        use_keys(old_keys)


@override_settings(USE_MOCK_BROKER=False)
def test_a_broker_that_cannot_be_reached_answers_503_with_the_structured_error(api, alpha):
    unreachable = {**IBKR, "port": 1, "connect_retries": 0, "connect_backoff_seconds": 0}
    _connect(api, alpha, {"broker": "ibkr", "credentials": unreachable})
    response = api.get("/clients/alpha/positions", **bearer(alpha.viewer))
    assert response.status_code == 503
    detail = response.json()["detail"]
    assert (detail["type"], detail["broker"], detail["retryable"]) == ("broker_error", "ibkr", True)
    assert set(detail) == {"type", "operation", "broker", "code", "message", "retryable", "context"}


def test_a_closing_fill_first_seen_by_positions_still_counts_for_the_circuit_breaker(api, alpha):
    from agents.models import AgentConfig
    from risk.models import RiskStateRecord

    with tenant_context(alpha.client):
        AgentConfig.objects.update_or_create(singleton=True, defaults={"parameters": {"risk_limits": {
            "max_daily_loss": "1000000", "duplicate_window_seconds": 0}}})
    future, _ = _instruments(alpha)
    assert _trade(alpha, (OrderLeg(future, "BUY", 1),), "cb-open").accepted
    with tenant_context(alpha.client), broker_session() as broker:
        opened = broker.quote(future).mid
        broker.shock("ES", -0.02)
    limit = round(opened * 0.99 / 0.25) * 0.25  # above the market now: the sell rests
    with tenant_context(alpha.client):
        resting = order_submit(client=alpha.client, actor=Actor("user", "test"), order=OrderRequest(
            client_order_id="cb-close", legs=(OrderLeg(future, "SELL", 1),), order_type="LMT", limit_price=limit))
    assert resting.accepted and resting.status.state == "submitted"
    with tenant_context(alpha.client), broker_session() as broker:
        broker.shock("ES", 0.015)  # back through the limit: the resting sell fills, at a loss
    api.get("/clients/alpha/positions", **bearer(alpha.viewer))
    with tenant_context(alpha.client):
        assert RiskStateRecord.objects.get().loss_streak == 1


@override_settings(USE_MOCK_BROKER=False)
def test_the_brokers_own_error_text_never_reaches_the_owner(api, alpha):
    """Phillip's base_url is the owner's to choose (within the allowlist): whatever answers there,
    the API returns our code and a generic message, never the server's words."""
    import json

    from brokers.tests.phillip_server import PhillipServer

    banner = "internal-admin v2.3 on 10.0.0.5: Traceback (most recent call last)"
    with PhillipServer(clients={"desk-7": "s3cr3t-value-never-shown"}) as server:
        server.fail("POST /oauth/token", 400, times=None,
                    body=json.dumps({"error": "x-internal-banner", "error_description": banner}).encode())
        response = _connect(api, alpha, {"broker": "phillip", "credentials": {
            **PHILLIP, "base_url": server.base_url, "request_retries": 0}})
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["status"] == "failed" and body["error"]["code"] == "auth_failed"
    assert banner not in response.content.decode() and "x-internal-banner" not in response.content.decode()
