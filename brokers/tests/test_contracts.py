"""Which future the agent hedges with and whose options it sees, on any date (pure)."""
from __future__ import annotations

from datetime import date

import pytest

from brokers.contracts import hedge_future_select, option_underlyings
from brokers.domain import Instrument

DEC, MAR, JUN, SEP = date(2026, 12, 18), date(2027, 3, 19), date(2027, 6, 18), date(2027, 9, 17)
FUTURES = [Instrument("ES", "FUT", expiry, "CME", 50.0) for expiry in (DEC, MAR, JUN, SEP)]


@pytest.mark.parametrize(("today", "expected"), [
    (date(2026, 11, 30), DEC),  # three weeks out: still the front
    (date(2026, 12, 9), DEC),  # the Wednesday before the roll
    (date(2026, 12, 10), MAR),  # the roll: the Thursday eight days before expiry
    (date(2026, 12, 18), MAR),  # expiry day
])
def test_the_hedge_future_rolls_on_the_thursday_eight_days_before_expiry(today, expected):
    choice = hedge_future_select(FUTURES, today=today, chosen_expiry=None)
    assert choice.future.expiry == expected
    if expected == MAR:
        assert "rolled on 2026-12-10" in choice.note and "ES FUT 20261218" in choice.note.replace("-", "")
    else:
        assert choice.note == ""


def test_a_hedge_future_the_owner_chose_is_kept_and_the_journal_says_it_is_past_its_roll():
    choice = hedge_future_select(FUTURES, today=date(2026, 12, 14), chosen_expiry=DEC)
    assert choice.future.expiry == DEC and "past its roll date 2026-12-10" in choice.note
    with pytest.raises(ValueError, match="2027-12-17"):
        hedge_future_select(FUTURES, today=date(2026, 12, 14), chosen_expiry=date(2027, 12, 17))


def test_the_options_of_the_next_future_are_seen_when_the_window_reaches_past_the_hedge_future():
    hedge = FUTURES[0]
    # 18 days before December's expiry, a 20-60 day window needs March's (January, February) options.
    chosen = option_underlyings(FUTURES, hedge=hedge, today=date(2026, 11, 30), dte_max=60)
    assert [f.expiry for f in chosen] == [DEC, MAR]
    # Far from expiry the hedge future's own options are enough.
    assert [f.expiry for f in option_underlyings(FUTURES, hedge=hedge, today=date(2026, 9, 21), dte_max=60)] == [DEC]
    # A long window reaches further.
    assert [f.expiry for f in option_underlyings(FUTURES, hedge=hedge, today=date(2026, 11, 30),
                                                 dte_max=200)] == [DEC, MAR, JUN]
