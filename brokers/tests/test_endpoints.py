"""Broker endpoints are restricted to the operator's allowlist: an owner cannot point Phillip's
base_url or IBKR's host/port at internal addresses (loopback only outside production)."""
import pytest
from django.test import override_settings

from brokers.tests.test_api import IBKR, PHILLIP, _connect


@pytest.mark.parametrize("base_url", ["http://169.254.169.254/latest/meta-data", "http://10.0.0.5:8080/v1",
                                      "https://internal-admin.corp/v1", "http://[fd00::1]/v1"])
def test_a_phillip_base_url_off_the_allowlist_is_refused(api, alpha, base_url):
    response = _connect(api, alpha, {"broker": "phillip", "credentials": {**PHILLIP, "base_url": base_url}})
    assert response.status_code == 400
    assert "allowlist" in str(response.json()["errors"])


@pytest.mark.parametrize(("host", "port"), [("10.0.0.5", 22), ("192.168.1.1", 6379), ("metadata.internal", 80)])
def test_an_ibkr_host_off_the_allowlist_is_refused(api, alpha, host, port):
    response = _connect(api, alpha, {"broker": "ibkr", "credentials": {**IBKR, "host": host, "port": port}})
    assert response.status_code == 400
    assert "allowlist" in str(response.json()["errors"])


@override_settings(BROKER_ALLOWED_HOSTS=["tws.example.net:7497", "*.phillip.example"])
def test_the_operator_allowlist_admits_named_hosts_and_ports_only():
    from brokers.endpoints import broker_endpoint_allowed

    assert broker_endpoint_allowed(host="tws.example.net", port=7497)
    assert not broker_endpoint_allowed(host="tws.example.net", port=22)
    assert broker_endpoint_allowed(host="api.phillip.example", port=443)
    assert not broker_endpoint_allowed(host="phillip.example.evil.com", port=443)
    assert broker_endpoint_allowed(host="api.phillipcapital.example")  # PHILLIP_BASE_URL's own host


def test_loopback_is_allowed_in_tests_and_development_but_not_in_production(settings):
    from brokers.endpoints import broker_endpoint_allowed

    assert broker_endpoint_allowed(host="127.0.0.1", port=7497)
    settings.IS_PRODUCTION = True
    assert not broker_endpoint_allowed(host="127.0.0.1", port=7497)
    assert not broker_endpoint_allowed(host="localhost", port=4002)


def test_stored_credentials_are_checked_again_when_the_broker_is_built(settings):
    """An endpoint allowed when it was stored, refused once the allowlist no longer admits it."""
    from brokers.domain import BrokerError
    from brokers.registry import broker_build, credentials_validate

    stored = credentials_validate(broker="ibkr", credentials={**IBKR, "host": "127.0.0.1", "port": 7497})
    settings.USE_MOCK_BROKER = False
    assert broker_build(broker="ibkr", credentials=stored).name == "ibkr"  # allowed: loopback in tests
    settings.IS_PRODUCTION = True  # loopback is not allowed in production
    with pytest.raises(BrokerError) as refused:
        broker_build(broker="ibkr", credentials=stored)
    assert refused.value.code == "endpoint_not_allowed" and refused.value.retryable is False
    assert "allowlist" in refused.value.message
