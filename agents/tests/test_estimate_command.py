"""`manage.py estimate_delta_coefficients`: Hull & White's coefficients from the stored quote history,
printed, and with --apply made the agent's through the audited parameter update."""
from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.core.management import CommandError, call_command
from django_tenants.utils import tenant_context

from agents.models import AgentConfig
from agents.selectors import agent_parameters_get
from agents.tests.books import buy_calls, configure
from audit import kinds
from brokers.services import broker_session
from risk import services as risk
from risk.book import book_delta_model
from risk.models import OptionQuotePoint
from risk.option_history import minimum_variance_estimate
from risk.tests.history import syncs_over_time
from tradingplatform.testing import audit_events

T0 = datetime(2027, 2, 10, 15, 0, tzinfo=UTC)


def _command(*args: str) -> str:
    out = io.StringIO()
    call_command("estimate_delta_coefficients", *args, stdout=out)
    return out.getvalue()


def _stored_parameters(fixture) -> dict:
    with tenant_context(fixture.client):
        return AgentConfig.objects.get(singleton=True).parameters


@pytest.fixture
def history(alpha):
    """An agent on the minimum-variance delta without coefficients, two long calls, and eight
    syncs' history half an hour apart."""
    with time_machine.travel(T0, tick=False) as clock:
        configure(alpha, delta_model="minimum_variance")
        buy_calls(alpha, 2, client_order_id="estimate-seed")
        syncs = syncs_over_time(alpha, clock, count=8, step=timedelta(minutes=30))
        yield alpha, syncs


def test_apply_sets_the_coefficients_audited_and_the_next_valuation_uses_them(history):
    alpha, syncs = history
    # Without coefficients the model leaves its legs on the sticky-strike delta.
    assert {leg.risk.greeks_source for leg in syncs[-1].valuation.legs} <= {"broker", "model"}
    with tenant_context(alpha.client):
        estimate = minimum_variance_estimate(underlying="ES", days=20)
    co = estimate.coefficients
    assert co is not None, estimate.reason
    out = _command("--client", "alpha", "--underlying", "es", "--days", "20", "--apply", "--actor", "alpha-owner")
    assert f"a={co.a:.6f} b={co.b:.6f} c={co.c:.6f} n={estimate.observations} R2={estimate.r_squared:.4f}" in out
    assert "Applied to alpha's agent" in out

    stored = _stored_parameters(alpha)
    assert stored["minimum_variance"] == {"a": co.a, "b": co.b, "c": co.c}
    assert stored["delta_model"] == "minimum_variance"
    (event,) = audit_events(client_id="alpha", kind=kinds.AGENT_PARAMETERS_CHANGED)
    assert event.actor_id == "alpha-owner" and event.actor_type == "user"
    assert event.payload["after"]["minimum_variance"] == {"a": co.a, "b": co.b, "c": co.c}
    assert "minimum_variance" not in event.payload["before"]

    with tenant_context(alpha.client):
        assert agent_parameters_get().minimum_variance.coefficients is not None
        with broker_session() as broker:
            valuation = risk.book_sync(client=alpha.client, broker=broker).valuation
    assert book_delta_model(valuation) == "minimum_variance"
    assert {leg.risk.greeks_source for leg in valuation.legs} <= {"broker+mv", "model+mv"}


def test_without_apply_it_only_prints(history):
    alpha, _ = history
    before = _stored_parameters(alpha)
    out = _command("--client", "alpha", "--underlying", "ES")
    assert out.startswith("ES since ") and " n=" in out and " R2=" in out
    assert _stored_parameters(alpha) == before
    assert audit_events(client_id="alpha", kind=kinds.AGENT_PARAMETERS_CHANGED) == []


def test_too_little_history_prints_the_reason_and_changes_nothing(alpha):
    configure(alpha, delta_model="minimum_variance")
    with tenant_context(alpha.client):
        OptionQuotePoint.objects.all().delete()
    before = _stored_parameters(alpha)
    with pytest.raises(CommandError, match="no ES option was quoted at two consecutive book syncs in the last 5 days"):
        _command("--client", "alpha", "--underlying", "ES", "--days", "5", "--apply", "--actor", "alpha-owner")
    assert _stored_parameters(alpha) == before
    assert audit_events(client_id="alpha", kind=kinds.AGENT_PARAMETERS_CHANGED) == []


@pytest.mark.parametrize(("args", "message"), [
    (["--client", "nobody", "--underlying", "ES"], "No client 'nobody'"),
    (["--client", "alpha", "--underlying", "ES", "--days", "0"], "--days must be a positive"),
    (["--client", "alpha", "--underlying", "ES", "--step-minutes", "0"], "--step-minutes must be a positive"),
    (["--client", "alpha", "--underlying", "ES", "--apply"], "--apply needs --actor"),
    (["--client", "alpha", "--underlying", "ES", "--apply", "--actor", "ghost"], "No user 'ghost'"),
    (["--client", "alpha", "--underlying", "ES", "--apply", "--actor", "alpha-trader"], "may not change"),
    (["--client", "alpha", "--underlying", "ES", "--apply", "--actor", "beta-owner"], "may not change"),
])
def test_bad_arguments_are_refused_before_anything_changes(alpha, beta, args, message):
    with pytest.raises(CommandError, match=message):
        _command(*args)


def test_apply_refuses_an_underlying_the_agent_does_not_hedge(history):
    alpha, _ = history
    with tenant_context(alpha.client):
        OptionQuotePoint.objects.update(underlying="NQ")  # NQ's history, to reach the check
    with pytest.raises(CommandError, match="The agent hedges ES, not NQ: nothing applied"):
        _command("--client", "alpha", "--underlying", "NQ", "--apply", "--actor", "alpha-owner")
    assert "minimum_variance" not in _stored_parameters(alpha)
    assert audit_events(client_id="alpha", kind=kinds.AGENT_PARAMETERS_CHANGED) == []
