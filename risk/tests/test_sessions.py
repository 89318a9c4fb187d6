from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pandas_market_calendars as mcal
import pytest

from brokers.products import PRODUCTS
from risk.sessions import (
    SESSION_OVERRIDES,
    MarketHours,
    UnknownCalendar,
    build_session_table,
    is_open,
    trading_day_start,
)

CT = ZoneInfo("America/Chicago")
EQUITY = "CME Globex Equity"
ENERGY = "CMEGlobex_Energy"
METALS = "CMEGlobex_Metals"


def ct(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=CT)


@pytest.fixture(scope="module")
def hours() -> MarketHours:
    return MarketHours(today=date(2026, 11, 24))


def test_products_use_calendars_the_library_knows(hours: MarketHours) -> None:
    for product in PRODUCTS.values():
        assert hours.table(product.calendar).opens, product.symbol


@pytest.mark.parametrize("calendar", [EQUITY, ENERGY, METALS])
@pytest.mark.parametrize(
    ("at", "expected"),
    [
        ("2026-11-24 15:59:59", True),  # Tuesday, before the maintenance break
        ("2026-11-24 16:00:00", False),  # break starts
        ("2026-11-24 16:30:00", False),
        ("2026-11-24 16:59:59", False),
        ("2026-11-24 17:00:00", True),  # next trading day opens
        ("2026-11-20 15:59:00", True),  # Friday
        ("2026-11-20 16:00:00", False),  # Friday close: weekend
        ("2026-11-21 12:00:00", False),  # Saturday
        ("2026-11-22 16:59:00", False),  # Sunday before the open
        ("2026-11-22 17:00:00", True),  # Sunday open
        ("2026-03-08 16:59:00", False),  # Sunday of the switch to daylight time
        ("2026-03-08 17:00:00", True),
        ("2026-11-01 17:00:00", True),  # Sunday of the switch back
    ],
)
def test_weekly_sessions_and_daily_break(hours: MarketHours, calendar: str, at: str, expected: bool) -> None:
    assert hours.is_open(calendar, ct(at)) is expected


@pytest.mark.parametrize(
    ("at", "expected"),
    [
        ("2026-11-26 11:59:00", True),  # Thanksgiving: early halt at 12:00 CT
        ("2026-11-26 12:00:00", False),
        ("2026-11-26 16:59:00", False),
        ("2026-11-26 17:00:00", True),  # reopens for Friday's trade date
        ("2026-11-27 12:14:00", True),  # Friday after Thanksgiving closes 12:15 CT
        ("2026-11-27 12:15:00", False),
        ("2026-12-24 12:14:00", True),  # Christmas Eve 12:15 CT
        ("2026-12-24 12:15:00", False),
        ("2026-12-25 10:00:00", False),  # Christmas
        ("2026-12-27 17:00:00", True),
        ("2026-04-03 08:14:00", True),  # Good Friday with the employment report: to 08:15 CT
        ("2026-04-03 08:15:00", False),
        ("2027-03-26 07:00:00", False),  # Good Friday without it: closed (override)
        ("2027-03-25 15:59:00", True),
        ("2027-03-25 17:00:00", False),
        ("2027-03-28 17:00:00", True),
    ],
)
def test_equity_holidays(hours: MarketHours, at: str, expected: bool) -> None:
    assert hours.is_open(EQUITY, ct(at)) is expected


def test_library_agrees_with_the_exchange_on_thanksgiving_2026() -> None:
    schedule = mcal.get_calendar(EQUITY).schedule("2026-11-26", "2026-11-27")
    closes = [c.tz_convert(CT).strftime("%Y-%m-%d %H:%M") for c in schedule["market_close"]]
    assert closes == ["2026-11-26 12:00", "2026-11-27 12:15"]


def test_overrides_remove_the_library_session() -> None:
    override = next(o for o in SESSION_OVERRIDES if o.trade_date == date(2027, 3, 26))
    schedule = mcal.get_calendar(override.calendar).schedule("2027-03-26", "2027-03-26")
    assert len(schedule) == 1  # the library has a session there...
    table = build_session_table(override.calendar, date(2027, 3, 22), date(2027, 3, 31))
    library = mcal.get_calendar(override.calendar).schedule("2027-03-22", "2027-03-31")
    assert len(table.opens) == len(library) - 1  # ...and the table does not


def test_energy_is_closed_on_good_friday(hours: MarketHours) -> None:
    assert not hours.is_open(ENERGY, ct("2026-04-03 08:00"))
    assert hours.is_open(ENERGY, ct("2026-11-26 13:29"))
    assert not hours.is_open(ENERGY, ct("2026-11-26 13:30"))


def test_table_is_sorted_and_disjoint(hours: MarketHours) -> None:
    table = hours.table(EQUITY)
    assert all(o < c for o, c in zip(table.opens, table.closes, strict=True))
    assert all(c <= o for c, o in zip(table.closes, table.opens[1:], strict=False))
    assert len(table.opens) > 700  # about three years of trade dates


@pytest.mark.parametrize(
    ("at", "start"),
    [
        ("2026-11-24 10:00", "2026-11-23 17:00"),
        ("2026-11-24 17:00", "2026-11-24 17:00"),
        ("2026-11-24 16:30", "2026-11-23 17:00"),  # in the break: the day that just ended
        ("2026-11-23 02:00", "2026-11-22 17:00"),  # Monday night session began Sunday
        ("2026-11-21 12:00", "2026-11-19 17:00"),  # Saturday: Friday's session
        ("2026-11-27 09:00", "2026-11-26 17:00"),
        ("2026-03-09 09:00", "2026-03-08 17:00"),
    ],
)
def test_trading_day_start(hours: MarketHours, at: str, start: str) -> None:
    assert hours.trading_day_start(EQUITY, ct(at)) == ct(start)
    assert hours.trading_day_start(EQUITY, ct(at)).tzinfo is UTC


@pytest.mark.parametrize(
    ("at", "start"),
    [
        ("2026-11-24 10:00", "2026-11-24 17:00"),
        ("2026-11-24 17:00", "2026-11-25 17:00"),
        ("2026-11-20 10:00", "2026-11-22 17:00"),
        ("2026-11-26 11:00", "2026-11-26 17:00"),
    ],
)
def test_next_trading_day_start(hours: MarketHours, at: str, start: str) -> None:
    assert hours.next_trading_day_start(EQUITY, ct(at)) == ct(start)


def test_always_open_keeps_real_trading_days() -> None:
    simulated = MarketHours(always_open=True, today=date(2026, 11, 24))
    saturday = ct("2026-11-21 12:00")
    assert simulated.is_open(EQUITY, saturday)
    assert simulated.trading_day_start(EQUITY, saturday) == ct("2026-11-19 17:00")


def test_a_time_outside_the_range_widens_the_table() -> None:
    narrow = MarketHours(today=date(2026, 11, 24), years_back=0, years_ahead=0)
    far = ct("2030-06-04 16:30")
    assert not narrow.is_open(EQUITY, far)
    assert narrow.is_open(EQUITY, far + timedelta(minutes=30))
    assert narrow.trading_day_start(EQUITY, far) == ct("2030-06-03 17:00")
    table = narrow.table(EQUITY)
    assert table.first_trade_date <= date(2026, 11, 24) and table.last_trade_date >= date(2030, 6, 4)
    assert narrow.is_open(EQUITY, ct("2026-11-24 10:00"))


def test_next_day_at_the_end_of_the_range_widens_the_table() -> None:
    narrow = MarketHours(today=date(2026, 11, 24), years_back=0, years_ahead=0)
    last_close = narrow.table(EQUITY).closes[-1]
    at = datetime.fromtimestamp(last_close - 60, UTC)
    assert narrow.next_trading_day_start(EQUITY, at) > at


def test_unknown_calendar_and_naive_time_are_refused(hours: MarketHours) -> None:
    with pytest.raises(UnknownCalendar):
        hours.is_open("Nowhere Exchange", ct("2026-11-24 10:00"))
    with pytest.raises(ValueError):
        hours.is_open(EQUITY, datetime(2026, 11, 24, 16, 0))


def test_module_functions_use_the_real_calendar() -> None:
    assert is_open(EQUITY, ct("2026-11-24 10:00"))
    assert not is_open(EQUITY, ct("2026-11-24 16:30"))
    assert trading_day_start(EQUITY, ct("2026-11-24 10:00")) == ct("2026-11-23 17:00")


# CME's published holiday hours for NYMEX and COMEX on Globex (CT): the Friday after Thanksgiving
# closes early at 12:45; on a Monday holiday (Labor Day) trading halts at 13:30 and reopens at 17:00
# for the next trade date. pandas_market_calendars 5.5.0 has 13:45 and 12:00 on these two dates.
@pytest.mark.parametrize("calendar", [ENERGY, METALS])
@pytest.mark.parametrize(
    ("at", "expected"),
    [
        ("2026-11-26 17:00:00", True),  # Friday's trade date opens Thursday evening
        ("2026-11-27 12:44:00", True),
        ("2026-11-27 12:45:00", False),  # CME's early close (the library: 13:45)
        ("2026-11-27 13:30:00", False),
        ("2026-11-29 17:00:00", True),
        ("2027-09-06 11:59:00", True),
        ("2027-09-06 12:00:00", True),  # the library halts here
        ("2027-09-06 13:29:00", True),
        ("2027-09-06 13:30:00", False),  # CME's halt
        ("2027-09-06 17:00:00", True),  # reopens for Tuesday's trade date
    ],
)
def test_energy_and_metals_holiday_hours_follow_cme(calendar: str, at: str, expected: bool) -> None:
    hours = MarketHours(today=date(2027, 1, 1))
    assert hours.is_open(calendar, ct(at)) is expected


@pytest.mark.parametrize("calendar", [ENERGY, METALS])
def test_the_library_still_disagrees_on_those_two_dates(calendar: str) -> None:
    # When an upgrade of the library fixes them, this fails: drop the overrides then.
    schedule = mcal.get_calendar(calendar).schedule("2026-11-27", "2026-11-27")
    assert schedule["market_close"].iloc[0].tz_convert(CT).strftime("%H:%M") == "13:45"
    schedule = mcal.get_calendar(calendar).schedule("2027-09-06", "2027-09-06")
    assert schedule["market_close"].iloc[0].tz_convert(CT).strftime("%H:%M") == "12:00"


def test_products_on_energy_and_metals_calendars_have_the_overrides() -> None:
    overridden = {o.calendar for o in SESSION_OVERRIDES if o.trade_date == date(2027, 9, 6)}
    for product in PRODUCTS.values():
        if product.exchange in ("NYMEX", "COMEX"):
            assert product.calendar in overridden, product.symbol


GRAINS = "CBOT_Agriculture"
LIVESTOCK = "CMEGlobex_Livestock"


@pytest.mark.parametrize(
    ("at", "expected"),
    [
        ("2026-11-23 19:00:00", True),  # Monday evening: Tuesday's night session
        ("2026-11-24 07:44:00", True),
        ("2026-11-24 07:45:00", False),  # the daily pause between night and day sessions
        ("2026-11-24 08:29:00", False),
        ("2026-11-24 08:30:00", True),
        ("2026-11-24 13:19:00", True),
        ("2026-11-24 13:20:00", False),  # day session close
        ("2026-11-24 18:59:00", False),
    ],
)
def test_grains_pause_between_their_night_and_day_sessions(hours: MarketHours, at: str, expected: bool) -> None:
    assert hours.is_open(GRAINS, ct(at)) is expected


def test_the_grain_pause_is_inside_one_trading_day(hours: MarketHours) -> None:
    assert hours.trading_day_start(GRAINS, ct("2026-11-24 08:00")) == ct("2026-11-23 19:00")
    assert hours.trading_day_start(GRAINS, ct("2026-11-24 10:00")) == ct("2026-11-23 19:00")


# CME's Thanksgiving schedule for grains: closed Thursday, no night session that evening, Friday
# 08:30 to about noon (CME: 12:05; the earlier 12:00 of the library is kept). Livestock closes at
# 12:05 that Friday (the library agrees) and is closed on Juneteenth (the library has a session).
@pytest.mark.parametrize(
    ("calendar", "at", "expected"),
    [
        (GRAINS, "2026-11-25 13:19:00", True),
        (GRAINS, "2026-11-26 10:00:00", False),  # Thanksgiving
        (GRAINS, "2026-11-26 19:30:00", False),  # no night session (the library: open)
        (GRAINS, "2026-11-27 08:00:00", False),
        (GRAINS, "2026-11-27 08:30:00", True),
        (GRAINS, "2026-11-27 11:59:00", True),
        (GRAINS, "2026-11-27 12:00:00", False),
        (GRAINS, "2026-11-29 19:00:00", True),  # Sunday night as usual
        (GRAINS, "2027-09-06 10:00:00", False),  # Labor Day
        (GRAINS, "2027-09-06 19:00:00", True),
        (LIVESTOCK, "2026-11-27 12:04:00", True),
        (LIVESTOCK, "2026-11-27 12:05:00", False),
        (LIVESTOCK, "2027-06-17 10:00:00", True),
        (LIVESTOCK, "2027-06-18 10:00:00", False),  # Juneteenth (override)
        (LIVESTOCK, "2027-09-06 10:00:00", False),  # Labor Day
    ],
)
def test_agricultural_holiday_hours_follow_cme(calendar: str, at: str, expected: bool) -> None:
    hours = MarketHours(today=date(2027, 1, 1))
    assert hours.is_open(calendar, ct(at)) is expected


def test_the_library_still_opens_grains_on_thanksgiving_evening_and_livestock_on_juneteenth() -> None:
    # When an upgrade of the library fixes these, this fails: drop the overrides then.
    schedule = mcal.get_calendar(GRAINS).schedule("2026-11-27", "2026-11-27")
    assert schedule["market_open"].iloc[0].tz_convert(CT).strftime("%m-%d %H:%M") == "11-26 19:00"
    assert len(mcal.get_calendar(LIVESTOCK).schedule("2027-06-18", "2027-06-18")) == 1


@pytest.mark.parametrize(
    ("calendar", "at", "expected"),
    [
        ("CBOT_InterestRate", "2027-01-18 11:59:00", True),  # Treasuries: Monday holiday halt at 12:00
        ("CBOT_InterestRate", "2027-01-18 12:00:00", False),
        ("CBOT_InterestRate", "2026-11-27 12:15:00", False),  # Friday after Thanksgiving: 12:15
        ("CMEGlobex_FX", "2027-01-18 15:59:00", True),  # FX trades through MLK day to 16:00
        ("CMEGlobex_FX", "2026-11-27 12:15:00", False),
    ],
)
def test_rates_and_fx_holiday_hours(calendar: str, at: str, expected: bool) -> None:
    hours = MarketHours(today=date(2027, 1, 1))
    assert hours.is_open(calendar, ct(at)) is expected


def test_every_product_calendar_is_one_risk_sessions_builds() -> None:
    hours = MarketHours(today=date(2026, 11, 24), years_back=0, years_ahead=0)
    for calendar in sorted({product.calendar for product in PRODUCTS.values()}):
        table = hours.table(calendar)
        assert table.opens and len(table.opens) == len(table.closes), calendar
        assert not table.break_starts or len(table.break_starts) == len(table.opens), calendar
