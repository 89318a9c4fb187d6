"""Working orders through the whole platform (issue 14): a hedge resting at the broker is not hedged
again, the governor counts it, and its fills reach the proposal. Once on the simulated market and
once through the IBKR adapter and the real ib_async client against the loopback fake TWS."""
from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from django.test import override_settings
from django.utils import timezone
from django_tenants.utils import tenant_context

from agents import services
from agents.models import AgentCycle, AgentDecision, Proposal
from agents.tests.books import ROOMY_LIMITS, buy_futures, configure
from brokers.codec import instrument_from_json
from brokers.domain import OrderLeg, OrderRequest
from brokers.models import BrokerConnection, Order
from brokers.services import broker_session
from brokers.simulator import SimClock
from brokers.tests.fake_tws import FakeTWS, Rest
from conftest import audit_events
from risk import services as risk
from tradingplatform.events import live_state_get, recent_events

# Wide enough for the steps below on a slow machine; the duplicate guard off, so that only the
# working orders keep the hedge from being sent twice.
LIMITS = {**ROOMY_LIMITS, "max_daily_loss": 100000, "max_quote_age_seconds": 300, "duplicate_window_seconds": 0}
BAND = {"method": "fixed", "width": 1.0}


def _cycle(fixture, key):
    with tenant_context(fixture.client):
        return services.cycle_run(client=fixture.client, key=key, trigger="manual")


def _approve(fixture, proposal):
    with tenant_context(fixture.client):
        return services.proposal_approve(client=fixture.client, proposal_id=str(proposal.pk), user="alpha-trader")


def _reload(fixture, proposal) -> Proposal:
    with tenant_context(fixture.client):
        return Proposal.objects.get(pk=proposal.pk)


def _order(fixture, proposal) -> Order:
    with tenant_context(fixture.client):
        return Order.objects.get(client_order_id=proposal.client_order_id)


def _working_state(fixture) -> dict:
    return live_state_get(client_id=fixture.client.client_id, name="greeks")["working_orders"]


def _status(fixture) -> dict:
    from agents.selectors import agent_status_get

    with tenant_context(fixture.client):
        return agent_status_get(client=fixture.client)


def _simulator(fixture, change) -> None:
    with tenant_context(fixture.client), broker_session() as broker:
        change(broker)


def _freeze(broker, *, fill_ratio):
    """The simulated market stops at this moment (what rests stays resting, whatever the prices
    do next), and fills only `fill_ratio` of each order when it is sent."""
    broker.simulator.clock = SimClock.manual(broker.simulator.now())
    broker.set_fill_ratio(fill_ratio)  # saves the state, stopped clock included


def _pending_sell(fixture, quantity):
    (proposal,) = _cycle(fixture, "k-1").proposals
    assert proposal.status == Proposal.Status.PENDING
    assert [(leg["side"], leg["quantity"]) for leg in proposal.legs] == [("SELL", quantity)]
    return proposal


def _assert_not_hedged_again(fixture, key, working_delta):
    outcome = _cycle(fixture, key)
    assert outcome.decision.outcome == AgentDecision.Outcome.NO_ACTION, outcome.decision.reason
    assert outcome.proposals == []
    assert f"of which {working_delta:+.2f} in working orders" in outcome.decision.reason
    assert outcome.decision.metrics["working_delta"] == working_delta
    with tenant_context(fixture.client):
        assert Proposal.objects.filter(action="hedge").count() == 1
    return outcome


# --- the simulated market ---------------------------------------------------------------------


def test_a_resting_hedge_is_not_hedged_again_and_its_fill_reaches_the_proposal(alpha):
    configure(alpha, band=BAND, risk_limits=LIMITS)
    buy_futures(alpha, 5)
    proposal = _pending_sell(alpha, 5)
    # The market drops below the proposal's limit: approved, the SELL 5 rests at the broker.
    _simulator(alpha, lambda broker: broker.shock("ES", -0.005))
    executed = _approve(alpha, proposal)
    assert executed.status == Proposal.Status.EXECUTED
    assert executed.execution["order_state"] == "submitted" and executed.execution["filled_quantity"] == 0

    # A new cycle sees +5 held and -5 working: nothing to hedge, and the journal says why.
    _assert_not_hedged_again(alpha, "k-2", -5.0)
    assert _working_state(alpha)["net_delta"] == -5.0 and _working_state(alpha)["orders"] == 1
    usage = _status(alpha)["usage"]
    assert usage["working_delta"] == -5.0 and usage["working_orders"] == 1 and usage["net_delta"] == 5.0

    # The market comes back through the limit: the order fills at the broker. The next sync (the
    # scheduled one, no cycle) brings the order row and the proposal up to date.
    _simulator(alpha, lambda broker: broker.shock("ES", 0.01))
    assert risk.client_book_sync(client=alpha.client)
    followed = _reload(alpha, proposal)
    assert followed.status == Proposal.Status.EXECUTED
    assert followed.execution["order_state"] == "filled" and followed.execution["filled_quantity"] == 5
    assert followed.execution["average_fill_price"] is not None
    assert _order(alpha, proposal).state == Order.State.FILLED
    assert _working_state(alpha)["orders"] == 0
    assert any(e.payload.get("followed_broker") and e.payload["filled_quantity"] == 5
               for e in audit_events(client_id="alpha", kind="proposal.executed"))
    updated = [e for e in audit_events(client_id="alpha", kind="order.updated")
               if e.payload["client_order_id"] == proposal.client_order_id]
    assert [e.payload["state"] for e in updated] == ["filled"]
    events = recent_events(client_id="alpha", limit=200)
    assert any(e["type"] == "order" and e["data"]["state"] == "filled" for e in events)
    assert any(e["type"] == "trade" and e["data"]["client_order_id"] == proposal.client_order_id for e in events)
    assert any(e["type"] == "proposal" and e["data"]["proposal"]["trade_id"] == str(proposal.pk)
               and (e["data"]["proposal"]["execution"] or {}).get("filled_quantity") == 5 for e in events)
    # Filled, it is a position now, and no longer working: the book is flat, nothing to do.
    outcome = _cycle(alpha, "k-3")
    assert outcome.decision.outcome == AgentDecision.Outcome.NO_ACTION
    assert "working orders" not in outcome.decision.reason


def test_a_partly_filled_hedge_counts_its_filled_part_as_position_and_the_rest_as_working(alpha):
    configure(alpha, band=BAND, risk_limits=LIMITS)
    buy_futures(alpha, 4)
    proposal = _pending_sell(alpha, 4)

    _simulator(alpha, lambda broker: _freeze(broker, fill_ratio=0.5))
    executed = _approve(alpha, proposal)
    assert executed.execution["order_state"] == "partially_filled" and executed.execution["filled_quantity"] == 2
    # The partial fill's own follow-up cycle: 2 held, 2 still working: nothing more to sell.
    with tenant_context(alpha.client):
        follow_up = AgentCycle.objects.get(key=f"partial:{proposal.pk}").decisions.get()
    assert follow_up.outcome == AgentDecision.Outcome.NO_ACTION, follow_up.reason
    assert "+0.00 (of which -2.00 in working orders)" in follow_up.reason
    _assert_not_hedged_again(alpha, "k-2", -2.0)
    assert _status(alpha)["usage"]["net_delta"] == 2.0

    def resume_and_lift(broker):
        broker.simulator.clock = SimClock.wall()
        broker.set_fill_ratio(1.0)
        broker.shock("ES", 0.004)  # well through the limit: the rest fills now

    _simulator(alpha, resume_and_lift)
    assert risk.client_book_sync(client=alpha.client)
    followed = _reload(alpha, proposal)
    assert followed.execution["order_state"] == "filled" and followed.execution["filled_quantity"] == 4
    assert _working_state(alpha)["orders"] == 0 and _status(alpha)["usage"]["net_delta"] == 0.0


def test_a_pending_hedge_a_working_order_made_needless_is_superseded_not_left_to_approve(alpha):
    from agents.services.proposals import ProposalConflict

    configure(alpha, band=BAND, risk_limits=LIMITS)
    future = buy_futures(alpha, 5)
    proposal = _pending_sell(alpha, 5)
    with tenant_context(alpha.client):  # meanwhile a trader sells 5 themselves, resting above the market
        with broker_session() as broker:
            ask = broker.quote(future).ask
        resting = risk.order_submit(client=alpha.client, actor=risk.Actor("user", "alpha-trader"), order=OrderRequest(
            client_order_id="trader-sell", legs=(OrderLeg(future, "SELL", 5),), order_type="LMT",
            limit_price=round((ask + 40.0) * 4) / 4, time_in_force="GTC"))
    assert resting.accepted and resting.status.state == "submitted"
    outcome = _assert_not_hedged_again(alpha, "k-2", -5.0)
    assert f"Pending hedge {proposal.pk} superseded" in outcome.decision.reason
    assert _reload(alpha, proposal).status == Proposal.Status.SUPERSEDED
    with pytest.raises(ProposalConflict):
        _approve(alpha, proposal)


@override_settings(AUTONOMOUS_ENABLED=True)
def test_autonomous_mode_does_not_send_a_second_hedge_beside_a_resting_one(alpha):
    configure(alpha, mode="autonomous", band=BAND, risk_limits=LIMITS)
    buy_futures(alpha, 5)
    _simulator(alpha, lambda broker: _freeze(broker, fill_ratio=0.0))  # sent orders rest
    (first,) = _cycle(alpha, "k-1").proposals
    assert first.status == Proposal.Status.EXECUTED and first.execution["order_state"] == "submitted"
    second = _cycle(alpha, "k-2")
    assert second.proposals == [] and "of which -5.00 in working orders" in second.decision.reason
    with tenant_context(alpha.client):
        assert Order.objects.exclude(client_order_id__startswith="drift-").count() == 1


# --- Interactive Brokers, through ib_async and the loopback fake TWS --------------------------

ES_MAR, ES_JUN = 51001, 51002


@pytest.fixture
def tws() -> Iterator[FakeTWS]:
    fake = FakeTWS()
    fake.list_future(con_id=ES_MAR, symbol="ES", last_trade_date="20270319", exchange="CME", multiplier=50)
    fake.list_future(con_id=ES_JUN, symbol="ES", last_trade_date="20270618", exchange="CME", multiplier=50)
    fake.set_quote(ES_MAR, bid=6000.0, ask=6000.25)
    fake.set_quote(ES_JUN, bid=6040.0, ask=6040.5)
    fake.set_position(ES_MAR, 5, 6000.0 * 50)  # IB's average cost includes the multiplier
    fake.start()
    yield fake
    fake.close()


@pytest.fixture
def ibkr_alpha(alpha, tws):
    credentials = {"host": "127.0.0.1", "port": tws.port, "client_id": 11, "underlying_instrument": "ES",
                   "underlying_expiry": "202703", "connect_retries": 2, "connect_backoff_seconds": 0.05}
    with override_settings(USE_MOCK_BROKER=False):
        with tenant_context(alpha.client):
            BrokerConnection.objects.create(broker="ibkr", credentials=json.dumps(credentials),
                                            status=BrokerConnection.Status.CONNECTED)
        yield alpha


def test_through_ib_async_a_resting_hedge_is_not_hedged_again_and_its_fill_reaches_the_proposal(ibkr_alpha, tws):
    configure(ibkr_alpha, band=BAND, risk_limits={**LIMITS, "max_leg_contracts": 8})
    proposal = _pending_sell(ibkr_alpha, 5)
    assert proposal.legs[0]["instrument_key"] == "ES FUT 20270319"
    tws.script_next_order(Rest())
    executed = _approve(ibkr_alpha, proposal)
    assert executed.execution["order_state"] == "submitted" and executed.execution["filled_quantity"] == 0
    (resting,) = [o for o in tws.orders if o.order_ref == proposal.client_order_id]
    assert resting.status == "Submitted" and resting.action == "SELL" and resting.quantity == 5

    outcome = _assert_not_hedged_again(ibkr_alpha, "k-2", -5.0)
    assert outcome.decision.metrics["position_delta"] == 5.0
    # A trader's SELL 5 beside it would be ten contracts working: over the leg limit of 8.
    with tenant_context(ibkr_alpha.client):
        refused = risk.order_submit(client=ibkr_alpha.client, actor=risk.Actor("user", "alpha-trader"),
                                    order=OrderRequest(client_order_id="trader-sell", order_type="MKT", legs=(
                                        OrderLeg(instrument_from_json(proposal.legs[0]["instrument"]), "SELL", 5),)))
    assert not refused.accepted and [code.value for code in refused.decision.codes] == ["max_leg_size"]
    assert refused.decision.pre_net_delta == 0.0 and refused.decision.working_delta == -5.0
    assert len([o for o in tws.orders if o.action == "SELL"]) == 1  # nothing more reached TWS

    tws.fill_resting_order(proposal.client_order_id, 5999.75)
    assert risk.client_book_sync(client=ibkr_alpha.client)
    followed = _reload(ibkr_alpha, proposal)
    assert followed.execution["order_state"] == "filled" and followed.execution["filled_quantity"] == 5
    assert followed.execution["average_fill_price"] == 5999.75
    assert _order(ibkr_alpha, proposal).state == Order.State.FILLED
    assert _working_state(ibkr_alpha)["orders"] == 0
    outcome = _cycle(ibkr_alpha, "k-3")
    assert outcome.decision.outcome == AgentDecision.Outcome.NO_ACTION
    assert outcome.decision.metrics["net_delta"] == 0.0


def test_a_structure_close_filling_in_parts_takes_off_each_part_once(alpha):
    from agents.models import AgentRuntime
    from agents.parameters import AgentParameters
    from agents.services.execution import _structure_after_fill

    held = {"kind": "short_strangle", "legs": [["ES FOP 20270319 5800 P", -4], ["ES FOP 20270319 6200 C", -4]],
            "entry_price": -40.0, "quantity": 4, "expiry": "2027-03-19", "opened_at": "2027-02-10T15:00:00+00:00"}
    close = Proposal(action="close_structure", legs=[])
    with tenant_context(alpha.client):
        AgentRuntime.objects.update_or_create(singleton=True, defaults={"open_structure": held})
        now = timezone.now()
        # The close fills 1 unit, then 2 in all (the same order seen again), then all 4.
        for filled, previously, left in [(1, 0, 3), (2, 1, 2), (2, 2, 2), (4, 2, None)]:
            _structure_after_fill(proposal=close, filled_units=filled, previously_filled=previously,
                                  average_price=None, parameters=AgentParameters(), now=now)
            remembered = AgentRuntime.objects.get().open_structure
            assert (remembered["quantity"] if remembered else None) == left
        assert remembered is None
