"""Test helpers that set up an agent and move its book on the simulated market, as a trader would."""
from __future__ import annotations

import uuid

from django.utils import timezone
from django_tenants.utils import tenant_context

from agents.models import AgentConfig
from brokers import contracts
from brokers.domain import OrderLeg, OrderRequest
from brokers.services import broker_session
from risk import services as risk

TRADER = risk.Actor("user", "test-trader")
ROOMY_LIMITS = {"max_net_delta": 50, "max_order_contracts": 20, "max_leg_contracts": 20}


def configure(fixture, *, mode="confirmation", **parameters):
    parameters.setdefault("risk_limits", ROOMY_LIMITS)
    with tenant_context(fixture.client):
        AgentConfig.objects.update_or_create(singleton=True, defaults={"mode": mode, "parameters": parameters})


def _buy(fixture, choose_instrument, quantity, client_order_id):
    with tenant_context(fixture.client):
        with broker_session() as broker:
            instrument = choose_instrument(broker)
        order = OrderRequest(client_order_id=client_order_id or f"drift-{uuid.uuid4().hex[:8]}",
                             legs=(OrderLeg(instrument, "BUY", quantity),), order_type="MKT")
        result = risk.order_submit(client=fixture.client, actor=TRADER, order=order)
    assert result.accepted and result.status.state == "filled", result
    return instrument


def hedge_future(broker):
    """The ES future the agent hedges with today (the front one until its roll date)."""
    return contracts.hedge_future_select(broker.listed_futures("ES"), today=timezone.now().date(),
                                         chosen_expiry=None).future


def buy_futures(fixture, quantity, client_order_id=None):
    """Positive delta from the ES future the agent hedges with."""
    return _buy(fixture, hedge_future, quantity, client_order_id)


def buy_calls(fixture, quantity, client_order_id=None):
    """Positive delta (and gamma) from near-the-money ES calls 20 to 60 days out, on whichever
    future they deliver (the agent's chain: see brokers.contracts)."""
    def near_the_money_call(broker):
        today = timezone.now().date()
        futures = broker.listed_futures("ES")
        hedge = hedge_future(broker)
        calls = [o for future in contracts.option_underlyings(futures, hedge=hedge, today=today, dte_max=60)
                 for o in broker.option_chain(future) if o.right == "C" and 20 <= (o.expiry - today).days <= 60]
        forwards = {future.expiry: broker.quote(future).mid for future in futures}
        return min(calls, key=lambda o: (abs(o.strike - forwards[o.underlying_expiry]), o.expiry))

    return _buy(fixture, near_the_money_call, quantity, client_order_id)
