"""The agent's key flows on the dates that matter, across a calendar year.

On each sampled moment the clock is set (time-machine moves `timezone.now` and the simulated
market's wall clock together) and a trader's flows run through the real services on the simulated
market and PostgreSQL: the agent proposes a delta hedge and opens a short strangle, a trader
approves both; the clock moves to the structure's roll date and the agent rolls it (close first,
then the open once the close has filled); a vol drop takes it to its profit target and the agent
closes it.

The samples: every month's first trading day, the week before each quarterly expiry, the expiry
day itself (before and after the 08:30 CT last trade), the day after, a Sunday evening open, a
holiday and an early close. `DATE_WALK_YEAR` chooses the year (default 2027); `DATE_WALK=every-day`
walks every day of it instead (slow: minutes; run it by hand to prove the year, as the README says).
"""
from __future__ import annotations

import os
from datetime import UTC, date, datetime, time, timedelta

import pandas_market_calendars as mcal
import pytest
import time_machine
from django.test import override_settings
from django_tenants.utils import tenant_context

from agents import services
from agents.models import Proposal
from agents.selectors import agent_runtime_get
from agents.tests.books import ROOMY_LIMITS, buy_futures, configure
from brokers.products import PRODUCTS, expiry_moment, roll_date
from brokers.services import broker_session
from brokers.simulator import third_friday

ES = PRODUCTS["ES"]
YEAR = int(os.environ.get("DATE_WALK_YEAR", "2027"))
STRANGLE = {"kind": "short_strangle", "short_delta": 0.2, "dte_min": 20, "dte_max": 60, "quantity": 2}
NO_EXITS = {"profit_target_pct": None, "stop_loss_pct": None, "roll_dte": 5}


def _first_trading_days(year: int) -> list[date]:
    schedule = mcal.get_calendar("CME Globex Equity").schedule(f"{year}-01-01", f"{year}-12-31")
    firsts: dict[int, date] = {}
    for day in schedule.index:
        firsts.setdefault(day.month, day.date())
    return [firsts[month] for month in sorted(firsts)]


def _at(day: date, hour: int, minute: int = 0) -> datetime:
    return datetime.combine(day, time(hour, minute), UTC)


def _samples(year: int) -> list[tuple[str, datetime]]:
    if os.environ.get("DATE_WALK") == "every-day":
        first = date(year, 1, 1)
        return [(f"{first + timedelta(days=n)}", _at(first + timedelta(days=n), 15))
                for n in range((date(year + 1, 1, 1) - first).days)]
    samples = [(f"first-trading-day-{day}", _at(day, 15)) for day in _first_trading_days(year)]
    for month in (3, 6, 9, 12):
        expiry = third_friday(year, month)
        samples += [
            (f"week-before-expiry-{expiry - timedelta(days=7)}", _at(expiry - timedelta(days=7), 15)),
            (f"expiry-day-morning-{expiry}", _at(expiry, 12)),  # before the 08:30 CT last trade
            (f"expiry-day-afternoon-{expiry}", _at(expiry, 17)),  # after it
            (f"day-after-expiry-{expiry + timedelta(days=1)}", _at(expiry + timedelta(days=1), 15)),
        ]
    february = date(year, 2, 1)
    sunday = february + timedelta(days=(6 - february.weekday()) % 7)
    samples += [
        (f"sunday-evening-open-{sunday}", _at(sunday, 23, 30)),  # 17:30 CT, the week's first session
        (f"holiday-independence-day-{year}-07-05", _at(date(year, 7, 5), 15)),
        (f"early-close-after-thanksgiving-{year}", _at(_thanksgiving(year) + timedelta(days=1), 19)),
    ]
    return samples


def _thanksgiving(year: int) -> date:
    first = date(year, 11, 1)
    return first + timedelta(days=(3 - first.weekday()) % 7 + 21)


def _cycle(fixture, key):
    with tenant_context(fixture.client):
        return services.cycle_run(client=fixture.client, key=key, trigger="manual")


def _approve(fixture, proposal):
    with tenant_context(fixture.client):
        return services.proposal_approve(client=fixture.client, proposal_id=str(proposal.pk), user="alpha-trader")


def _only(outcome, action):
    chosen = [p for p in outcome.proposals if p.action == action]
    assert len(chosen) == 1, (action, [p.action for p in outcome.proposals], outcome.decision.reason)
    return chosen[0]


def _option_expiries(proposal) -> set[date]:
    return {date.fromisoformat(leg["instrument"]["expiry"]) for leg in proposal.legs}


def _check_hedge(proposal, now: datetime) -> None:
    (leg,) = proposal.legs
    expiry = date.fromisoformat(leg["instrument"]["expiry"])
    assert leg["instrument"]["sec_type"] == "FUT"
    # Never a future in its last week: the hedge has rolled on its roll date.
    assert now.date() < roll_date(ES, expiry), (now, expiry)


@pytest.mark.parametrize(("label", "moment"), _samples(YEAR), ids=[label for label, _ in _samples(YEAR)])
@override_settings(AUTONOMOUS_ENABLED=False)
def test_hedge_open_roll_and_close_on(alpha, label, moment):
    with time_machine.travel(moment, tick=False) as clock:
        configure(alpha, structure=STRANGLE, exits=NO_EXITS, band={"method": "fixed", "width": 1.0},
                  risk_limits=ROOMY_LIMITS)
        buy_futures(alpha, 6)

        # Propose a hedge and open a structure; a trader approves both.
        first = _cycle(alpha, "open")
        opened, hedge = _only(first, "open_structure"), _only(first, "hedge")
        _check_hedge(hedge, moment)
        assert hedge.legs[0]["side"] == "SELL"
        for expiry in _option_expiries(opened):
            assert 20 <= (expiry - moment.date()).days <= 60
        assert _approve(alpha, opened).status == Proposal.Status.EXECUTED
        assert _approve(alpha, hedge).status == Proposal.Status.EXECUTED
        with tenant_context(alpha.client):
            held = agent_runtime_get().open_structure
        assert held is not None and held["kind"] == "short_strangle"
        structure_expiry = date.fromisoformat(held["expiry"])

        # Its roll date: the close is proposed first, the new structure once the close has filled.
        roll_at = datetime.combine(structure_expiry - timedelta(days=NO_EXITS["roll_dte"]), moment.timetz())
        clock.move_to(roll_at)
        roll = _cycle(alpha, "roll")
        close = _only(roll, "close_structure")
        assert "once the close has filled" in roll.decision.reason
        assert _approve(alpha, close).status == Proposal.Status.EXECUTED
        reopen = _cycle(alpha, "reopen")
        reopened = _only(reopen, "open_structure")
        assert min(_option_expiries(reopened)) > structure_expiry
        assert _approve(alpha, reopened).status == Proposal.Status.EXECUTED
        for proposal in reopen.proposals:
            if proposal.action == "hedge":
                _check_hedge(proposal, roll_at)

        # Implied vol falls: the short strangle reaches its profit target and is closed.
        configure(alpha, structure=STRANGLE, exits={**NO_EXITS, "profit_target_pct": 30},
                  band={"method": "fixed", "width": 1.0}, risk_limits=ROOMY_LIMITS)
        with tenant_context(alpha.client), broker_session() as broker:
            broker.shock("ES", 0.0, vol_points=-0.08)
        exit_ = _cycle(alpha, "exit")
        closed = _only(exit_, "close_structure")
        assert "profit" in closed.summary.lower()
        assert _approve(alpha, closed).status == Proposal.Status.EXECUTED
        with tenant_context(alpha.client):
            assert agent_runtime_get().open_structure is None


def test_the_samples_cover_what_the_issue_names():
    labels = [label for label, _ in _samples(YEAR)]
    if os.environ.get("DATE_WALK") == "every-day":
        assert len(labels) in (365, 366)
        return
    assert sum(label.startswith("first-trading-day") for label in labels) == 12
    for prefix in ("week-before-expiry", "expiry-day-morning", "expiry-day-afternoon", "day-after-expiry"):
        assert sum(label.startswith(prefix) for label in labels) == 4
    assert any(label.startswith("sunday-evening-open") for label in labels)
    assert any(label.startswith("holiday") for label in labels)
    assert any(label.startswith("early-close") for label in labels)
    # The expiry-day samples sit either side of the quarterly options' last trade.
    for month in (3, 6, 9, 12):
        expiry = third_friday(YEAR, month)
        from brokers.domain import Instrument

        future = Instrument(symbol="ES", sec_type="FUT", expiry=expiry, exchange="CME", multiplier=50.0)
        assert _at(expiry, 12) < expiry_moment(future) < _at(expiry, 17)
