"""The governor service: one path to the broker, per-client lock, decisions recorded and audited,
state transitions, halts and the circuit breaker — on the simulated market and real PostgreSQL."""
import threading

import pytest
from django.db import connections
from django.test import override_settings
from django_tenants.utils import tenant_context

from brokers.domain import OrderLeg, OrderRequest
from brokers.models import Fill, Order
from brokers.services import broker_session
from risk import selectors, services
from risk.models import RiskDecisionRecord, RiskStateRecord
from tradingplatform.testing import audit_events

USER = services.Actor("user", "test-trader")


def _future(fixture):
    with tenant_context(fixture.client), broker_session() as broker:
        return broker.lookup_instrument(symbol="ES", sec_type="FUT")


def _submit(fixture, client_order_id, *legs, actor=USER):
    with tenant_context(fixture.client):
        return services.order_submit(
            client=fixture.client, order=OrderRequest(client_order_id=client_order_id, legs=legs, order_type="MKT"),
            actor=actor,
        )


def _set_limits(fixture, **limits):
    from agents.models import AgentConfig

    with tenant_context(fixture.client):
        AgentConfig.objects.update_or_create(singleton=True, defaults={"parameters": {"risk_limits": limits}})


def test_an_accepted_order_is_recorded_before_and_after_the_broker_call(alpha):
    future = _future(alpha)
    result = _submit(alpha, "s-1", OrderLeg(future, "BUY", 2))
    assert result.accepted and result.status.state == "filled"
    with tenant_context(alpha.client):
        order = Order.objects.get(client_order_id="s-1")
        assert order.state == "filled" and order.filled_quantity == 2
        assert Fill.objects.filter(client_order_id="s-1").count() == 1
        decision = RiskDecisionRecord.objects.get(client_order_id="s-1")
        assert decision.accepted and decision.codes == []
    kinds = [e.kind for e in audit_events(client_id="alpha")]
    assert "risk.decision" in kinds and "order.executed" in kinds


def test_a_rejected_order_never_reaches_the_broker_and_says_every_reason(alpha):
    future = _future(alpha)
    _set_limits(alpha, max_net_delta=3, max_leg_contracts=4)
    result = _submit(alpha, "s-2", OrderLeg(future, "BUY", 5))
    assert not result.accepted
    assert {"max_net_delta", "max_leg_size"} <= {code.value for code in result.decision.codes}
    with tenant_context(alpha.client):
        assert not Order.objects.filter(client_order_id="s-2").exists()
        assert not Fill.objects.exists()
    event = audit_events(client_id="alpha", kind="risk.decision")[-1]
    assert {v["code"] for v in event.payload["violations"]} >= {"max_net_delta", "max_leg_size"}


def test_resubmitting_the_same_client_order_id_asks_the_broker_instead_of_sending_again(alpha):
    future = _future(alpha)
    first = _submit(alpha, "s-3", OrderLeg(future, "BUY", 1))
    again = _submit(alpha, "s-3", OrderLeg(future, "BUY", 1))
    assert first.accepted and again.decision is None and again.status.state == "filled"
    with tenant_context(alpha.client):
        assert Fill.objects.filter(client_order_id="s-3").count() == 1
        assert RiskDecisionRecord.objects.filter(client_order_id="s-3").count() == 1


def test_a_hedge_out_of_a_delta_breach_passes(alpha):
    future = _future(alpha)
    assert _submit(alpha, "s-4a", OrderLeg(future, "BUY", 8)).accepted
    _set_limits(alpha, max_net_delta=5)
    assert not _submit(alpha, "s-4b", OrderLeg(future, "BUY", 1)).accepted
    assert _submit(alpha, "s-4c", OrderLeg(future, "SELL", 2)).accepted


def test_emergency_halt_blocks_execution_and_is_audited_per_client(alpha, beta):
    future = _future(alpha)
    services.emergency_halt_set(halted=True, reason="exchange outage", actor=services.Actor("operator", "ops"))
    result = _submit(alpha, "s-5", OrderLeg(future, "BUY", 1))
    assert not result.accepted and "emergency_halt" in {c.value for c in result.decision.codes}
    with tenant_context(alpha.client):
        assert selectors.halt_reason(client=alpha.client) == "emergency halt: exchange outage"
    for client_id in ("alpha", "beta"):
        assert len(audit_events(client_id=client_id, kind="halt.emergency")) == 1
    services.emergency_halt_set(halted=False, reason="resolved", actor=services.Actor("operator", "ops"))
    assert _submit(alpha, "s-5b", OrderLeg(future, "BUY", 1)).accepted
    assert len(audit_events(client_id="alpha", kind="halt.emergency_lifted")) == 1


def test_a_client_halt_stops_only_that_client(alpha, beta):
    future = _future(alpha)
    with tenant_context(alpha.client):
        services.client_halt_set(client=alpha.client, halted=True, reason="margin call",
                                 actor=services.Actor("operator", "ops"))
    assert not _submit(alpha, "s-6", OrderLeg(future, "BUY", 1)).accepted
    assert _submit(beta, "s-6", OrderLeg(_future(beta), "BUY", 1)).accepted


def _closing_loss(fixture, number, loss_per_contract_points):
    """A round trip losing about `loss_per_contract_points` x 50 USD: buy, move the market down, sell."""
    future = _future(fixture)
    assert _submit(fixture, f"open-{number}", OrderLeg(future, "BUY", 1)).accepted
    with tenant_context(fixture.client), broker_session() as broker:
        price = broker.quote(future).mid
        broker.shock("ES", -loss_per_contract_points / price)
    return _submit(fixture, f"close-{number}", OrderLeg(future, "SELL", 1))


def test_three_losses_over_the_threshold_halt_until_an_owner_resets(alpha):
    _set_limits(alpha, max_daily_loss="1000000", duplicate_window_seconds=0)
    for number in range(3):
        assert _closing_loss(alpha, number, 20).accepted  # ~ -1000 USD each
    with tenant_context(alpha.client):
        state = RiskStateRecord.objects.get()
        assert (state.trading_state, state.reason, state.loss_streak) == ("HALTED", "circuit_breaker", 3)
    blocked = _submit(alpha, "after-trip", OrderLeg(_future(alpha), "BUY", 1))
    assert "trading_halted" in {c.value for c in blocked.decision.codes}
    with tenant_context(alpha.client):
        services.circuit_breaker_reset(client=alpha.client, actor=USER, note="reviewed")
        assert RiskStateRecord.objects.get().trading_state == "ACTIVE"
    assert _submit(alpha, "after-reset", OrderLeg(_future(alpha), "BUY", 1)).accepted


def test_a_win_between_losses_resets_the_streak(alpha):
    _set_limits(alpha, max_daily_loss="1000000", duplicate_window_seconds=0)
    assert _closing_loss(alpha, 0, 20).accepted
    future = _future(alpha)
    assert _submit(alpha, "win-open", OrderLeg(future, "BUY", 1)).accepted
    with tenant_context(alpha.client), broker_session() as broker:
        broker.shock("ES", 0.01)
    assert _submit(alpha, "win-close", OrderLeg(future, "SELL", 1)).accepted
    for number in (1, 2):
        assert _closing_loss(alpha, number, 20).accepted
    with tenant_context(alpha.client):
        state = RiskStateRecord.objects.get()
        assert (state.trading_state, state.loss_streak) == ("ACTIVE", 2)


def test_daily_loss_beyond_the_limit_goes_reducing(alpha):
    _set_limits(alpha, max_daily_loss="500")
    future = _future(alpha)
    assert _submit(alpha, "dl-open", OrderLeg(future, "BUY", 2)).accepted
    with tenant_context(alpha.client), broker_session() as broker:
        broker.shock("ES", -0.01)  # about -60 points: -6000 USD unrealized
    increasing = _submit(alpha, "dl-more", OrderLeg(future, "BUY", 1))
    assert "max_daily_loss" in {c.value for c in increasing.decision.codes}
    with tenant_context(alpha.client):
        assert RiskStateRecord.objects.get().trading_state == "REDUCING"
    assert _submit(alpha, "dl-reduce", OrderLeg(future, "SELL", 1)).accepted


@override_settings(AUTONOMOUS_ENABLED=False)
def test_the_kill_switch_stops_agent_executions(alpha):
    with tenant_context(alpha.client), pytest.raises(services.ExecutionHalted):
        services.autonomous_execution_check(client=alpha.client, actor=services.Actor("agent", "agent"))
    assert audit_events(client_id="alpha", kind="risk.kill_switch")


# --- concurrency: committed data, real threads, one connection each ----------------------------


@pytest.fixture
def race_client(django_db_setup, django_db_blocker):
    """A client used only by the concurrency tests: their writes are committed and stay."""
    return django_db_setup["race"]


def _in_thread(target, *args):
    outcome = {}

    def run():
        try:
            outcome["value"] = target(*args)
        except BaseException as exc:  # reported to the test thread
            outcome["error"] = exc
        finally:
            connections.close_all()

    thread = threading.Thread(target=run)
    thread.start()
    return thread, outcome


def test_two_orders_that_each_fit_but_not_together_accept_exactly_one(race_client, django_db_blocker):
    with django_db_blocker.unblock():
        _set_limits(race_client, max_net_delta=10)
        future = _future(race_client)
        barrier = threading.Barrier(2)

        def submit(client_order_id, quantity):
            barrier.wait()
            return _submit(race_client, client_order_id, OrderLeg(future, "BUY", quantity))

        runs = [_in_thread(submit, "race-a", 6), _in_thread(submit, "race-b", 7)]
        for thread, _ in runs:
            thread.join(60)
        results = [outcome["value"] for _, outcome in runs]
        assert sorted(result.accepted for result in results) == [False, True]
        rejected = next(result for result in results if not result.accepted)
        assert "max_net_delta" in {c.value for c in rejected.decision.codes}


def test_an_approval_racing_the_emergency_halt_is_blocked_or_its_order_cancelled(race_client, django_db_blocker):
    with django_db_blocker.unblock():
        _set_limits(race_client, max_net_delta=100, max_leg_contracts=50, max_order_contracts=50)
        future = _future(race_client)
        barrier = threading.Barrier(2)

        def approve():
            barrier.wait()
            return _submit(race_client, "race-approval", OrderLeg(future, "BUY", 1))

        def halt():
            barrier.wait()
            return services.emergency_halt_set(halted=True, reason="race", actor=services.Actor("operator", "ops"))

        runs = [_in_thread(approve), _in_thread(halt)]
        for thread, _ in runs:
            thread.join(60)
        result = runs[0][1]["value"]
        try:
            with tenant_context(race_client.client):
                order = Order.objects.filter(client_order_id="race-approval").first()
            # Either the approval came first and completed (a market order fills at once, nothing
            # left working), or the halt came first and the approval was refused.
            if result.accepted:
                assert order.state in {"filled", "cancelled"}
            else:
                assert "emergency_halt" in {c.value for c in result.decision.codes}
                assert order is None
            after = _submit(race_client, "race-after", OrderLeg(future, "BUY", 1))
            assert not after.accepted
        finally:
            services.emergency_halt_set(halted=False, reason="race over", actor=services.Actor("operator", "ops"))


def test_state_changes_and_violations_are_published_for_the_live_stream(alpha):
    from tradingplatform.events import recent_events

    future = _future(alpha)
    _set_limits(alpha, max_leg_contracts=1)
    _submit(alpha, "pub-1", OrderLeg(future, "BUY", 2))
    with tenant_context(alpha.client):
        services.client_halt_set(client=alpha.client, halted=True, reason="check",
                                 actor=services.Actor("operator", "o"))
    events = recent_events(client_id="alpha")
    kinds = [(event["type"], event["data"].get("event") or event["data"].get("scope")) for event in events]
    assert ("risk", "violation") in kinds and ("halt", "client") in kinds
    assert [event["seq"] for event in events] == sorted(event["seq"] for event in events)
    assert all(event["client_id"] == "alpha" for event in events)
