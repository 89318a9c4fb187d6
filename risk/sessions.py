"""Exchange trading sessions as precomputed UTC intervals.

`pandas_market_calendars` knows the CME Globex sessions, but asking pandas on every pre-trade check
costs milliseconds. Instead each calendar is expanded once (lazily, per calendar, one year back and
two years ahead, and widened when asked about a time outside) into two sorted tuples of epoch
seconds, `opens` and `closes`, so that "is the market open" is one `bisect`.

What the library returns for CME Globex (checked against pandas_market_calendars 5.5.0):
- one row per exchange trade date, opening 17:00 Chicago time the evening before and closing 16:00
  that day. The daily 16:00-17:00 CT maintenance break is the gap between consecutive rows; there
  is no `break_start`/`break_end` column. The weekend is the gap between Friday's 16:00 close and
  the Monday row's Sunday 17:00 open.
- holidays with an early halt are rows with an early close: Thanksgiving 2026-11-26 closes 12:00 CT
  for equity futures (the exchange's published hours: halt at 12:00 CT, reopen 17:00 CT for
  Friday), and Friday 2026-11-27 runs 17:00 Thursday to 12:15 CT. Both agree with CME, so they
  need no override.
- CME books the short session of a Monday holiday (MLK, Presidents', Memorial, Labor Day) into the
  next trade date; the library gives it its own row. We follow the library: the trading day that
  the daily loss limit measures from restarts at 17:00 CT on the holiday.

Where the library disagrees with the exchange, the exchange wins: see `SESSION_OVERRIDES` (Good
Fridays without an employment report for equity; the Friday after Thanksgiving 2026 and Labor Day
2027 for energy and metals, which covers every product on those calendars: CL, NG, GC, SI, HG;
the Friday after Thanksgiving for CBOT grains, which has no night session before it; Juneteenth
for livestock). The simulated market reads these same tables
(`brokers.simulator.market`), so it is closed exactly when the governor says so.

Calendars with a daily pause inside the session (CBOT grains: 07:45-08:30 CT between the night
and the day session) keep it as the session's break: closed during it, yet the same trading day.

Which calendar each product uses is `brokers.products.Product.calendar`; docs/brokers/products.md
lists them with the holiday hours checked here.

Intervals are half-open, [open, close): at 16:00:00 CT the market is closed, at 17:00:00 open.
"""
from __future__ import annotations

import bisect
import itertools
import threading
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pandas as pd
import pandas_market_calendars as mcal

_DEFAULT_YEARS_BACK = 1
_DEFAULT_YEARS_AHEAD = 2
# When a time outside the precomputed range is asked about, extend past it by this much so that
# neighbouring look-ups (the next session, a replay over a few weeks) do not rebuild again.
_EXTENSION_MARGIN = timedelta(days=60)


class UnknownCalendar(KeyError):
    """The calendar name is not one pandas_market_calendars knows."""


@dataclass(frozen=True, slots=True)
class SessionOverride:
    """The exchange's published hours for one trade date, replacing the library's.

    `close_local` is the close in the calendar's time zone; None means no session that trade date.
    `open_local`, when given, opens the session on the trade date itself at that time (no night
    session before it, and no break); otherwise the open stays the library's (the evening before).
    """

    calendar: str
    trade_date: date
    close_local: time | None
    why: str
    open_local: time | None = None


_GOOD_FRIDAY_CLOSED = (
    "Good Friday: CME equity futures trade an abbreviated session (to 08:15 CT) only when the BLS "
    "employment report is released that day (2010, 2012, 2015, 2021, 2023, 2026); otherwise they "
    "are closed. The library assumes an 08:15 CT session on every Good Friday since 2023."
)

# NYMEX and COMEX on Globex (CL, NG, GC, SI, HG: every product on the energy and metals calendars).
# Reported upstream: see the README's notes on pandas_market_calendars.
_FRIDAY_AFTER_THANKSGIVING_ENERGY_METALS = (
    "Friday after Thanksgiving: CME energy and metals close early at 12:45 CT (13:45 ET), as in "
    "every year the library itself has (2024-11-29, 2025-11-28, 2027-11-26: 12:45 CT); "
    "pandas_market_calendars 5.5.0 makes 2026-11-27 alone a 13:45 CT close (its PR #469, after "
    "its issue #464). The earlier close is also the fail-safe answer: confirm it on CME's "
    "trading-hours page for trade date 2026-11-27 and remove this line if CME says 13:45."
)
_LABOR_DAY_ENERGY_METALS = (
    "Labor Day: CME energy and metals halt at 13:30 CT (14:30 ET) and reopen at 17:00 CT, as on "
    "every other Monday holiday (MLK, Presidents', Memorial Day) and on Labor Day 2026 in the "
    "library itself; pandas_market_calendars 5.5.0 halts them at 12:00 CT on Labor Day from 2027 "
    "(its recurring USLaborDayFrom2027 rule, the equity halt)."
)

_FRIDAY_AFTER_THANKSGIVING_GRAINS = (
    "Friday after Thanksgiving: CBOT grains have no night session on Thanksgiving evening and "
    "open at 08:30 CT (CME holiday calendar); the library opens them at 19:00 CT on Thursday. Its "
    "12:00 CT close is kept: CME's is 12:05, and the earlier is the fail-safe answer."
)
_JUNETEENTH_LIVESTOCK = (
    "Juneteenth: CME's agricultural markets (grains and livestock) are closed; the library's "
    "livestock calendar has a full session (its grains calendar is closed)."
)

SESSION_OVERRIDES: tuple[SessionOverride, ...] = (
    SessionOverride("CME Globex Equity", date(2024, 3, 29), None, _GOOD_FRIDAY_CLOSED),
    SessionOverride("CME Globex Equity", date(2025, 4, 18), None, _GOOD_FRIDAY_CLOSED),
    # Not yet published by CME when written (the employment reports fall on 2027-04-02 and
    # 2028-04-07); closed is also the fail-safe answer. Revisit when CME publishes its hours.
    SessionOverride("CME Globex Equity", date(2027, 3, 26), None, _GOOD_FRIDAY_CLOSED),
    SessionOverride("CME Globex Equity", date(2028, 4, 14), None, _GOOD_FRIDAY_CLOSED),
    *(
        SessionOverride(calendar, trade_date, close_local, why)
        for calendar in ("CMEGlobex_Energy", "CMEGlobex_Metals")
        for trade_date, close_local, why in (
            (date(2026, 11, 27), time(12, 45), _FRIDAY_AFTER_THANKSGIVING_ENERGY_METALS),
            (date(2027, 9, 6), time(13, 30), _LABOR_DAY_ENERGY_METALS),
        )
    ),
    *(
        SessionOverride("CBOT_Agriculture", trade_date, time(12, 0), _FRIDAY_AFTER_THANKSGIVING_GRAINS,
                        open_local=time(8, 30))
        for trade_date in (date(2025, 11, 28), date(2026, 11, 27), date(2027, 11, 26), date(2028, 11, 24))
    ),
    *(
        SessionOverride("CMEGlobex_Livestock", trade_date, None, _JUNETEENTH_LIVESTOCK)
        for trade_date in (date(2025, 6, 19), date(2026, 6, 19), date(2027, 6, 18), date(2028, 6, 19))
    ),
)


@dataclass(frozen=True, slots=True)
class SessionTable:
    """The sessions of one calendar over a date range, as sorted epoch seconds (UTC)."""

    calendar: str
    opens: tuple[float, ...]
    closes: tuple[float, ...]
    first_trade_date: date
    last_trade_date: date
    # Per session, its daily break [start, end) inside it; start == end == close when it has none.
    break_starts: tuple[float, ...] = ()
    break_ends: tuple[float, ...] = ()

    def covers(self, epoch: float) -> bool:
        # Before the first open or after the last close the table cannot tell a break from a
        # session it never loaded.
        return bool(self.opens) and self.opens[0] <= epoch < self.closes[-1]

    def session_index(self, epoch: float) -> int:
        """Index of the last session that opened at or before `epoch` (-1 when none did)."""
        return bisect.bisect_right(self.opens, epoch) - 1

    def is_open(self, epoch: float) -> bool:
        i = bisect.bisect_right(self.opens, epoch) - 1
        if i < 0 or epoch >= self.closes[i]:
            return False
        return not (self.break_starts and self.break_starts[i] <= epoch < self.break_ends[i])


def build_session_table(calendar: str, first_trade_date: date, last_trade_date: date) -> SessionTable:
    """Expand a calendar's schedule between two trade dates (inclusive), overrides applied."""
    try:
        exchange = mcal.get_calendar(calendar)
    except RuntimeError as exc:  # the library's answer to a name it does not know
        raise UnknownCalendar(calendar) from exc
    schedule = exchange.schedule(start_date=first_trade_date, end_date=last_trade_date)
    zone = ZoneInfo(str(exchange.tz))
    overrides = {o.trade_date: o for o in SESSION_OVERRIDES if o.calendar == calendar}

    has_breaks = "break_start" in schedule.columns
    sessions: list[tuple[float, float, float, float]] = []  # open, close, break start, break end
    for row in schedule.itertuples():
        trade_date = row.Index.date()
        open_epoch, close_epoch = row.market_open.timestamp(), row.market_close.timestamp()
        break_start = break_end = close_epoch
        if has_breaks and not (pd.isna(row.break_start) or pd.isna(row.break_end)):
            break_start, break_end = row.break_start.timestamp(), row.break_end.timestamp()
        override = overrides.get(trade_date)
        if override is not None:
            if override.close_local is None:
                continue
            close_epoch = datetime.combine(trade_date, override.close_local, zone).timestamp()
            if override.open_local is not None:
                open_epoch = datetime.combine(trade_date, override.open_local, zone).timestamp()
            if override.open_local is not None or break_start >= close_epoch:
                break_start = break_end = close_epoch
        sessions.append((open_epoch, close_epoch, min(break_start, close_epoch), min(break_end, close_epoch)))

    sessions.sort()
    for previous, following in itertools.pairwise(sessions):
        if following[0] < previous[1]:
            raise ValueError(f"calendar {calendar!r} has overlapping sessions near {following[0]}")
    return SessionTable(
        calendar=calendar,
        opens=tuple(s[0] for s in sessions),
        closes=tuple(s[1] for s in sessions),
        first_trade_date=first_trade_date,
        last_trade_date=last_trade_date,
        break_starts=tuple(s[2] for s in sessions) if has_breaks else (),
        break_ends=tuple(s[3] for s in sessions) if has_breaks else (),
    )


def _epoch(at: datetime) -> float:
    if at.tzinfo is None:
        raise ValueError("market hours need a timezone-aware datetime")
    return at.timestamp()


class MarketHours:
    """Session look-ups for every calendar the platform trades; build one per process and share it.

    `always_open=True` is the simulated market: every calendar is open at every instant, while the
    trading day still follows the real calendar (so the daily loss limit resets as it would live).
    Safe to share between threads: tables are immutable and built under a lock.
    """

    def __init__(
        self,
        *,
        always_open: bool = False,
        today: date | None = None,
        years_back: int = _DEFAULT_YEARS_BACK,
        years_ahead: int = _DEFAULT_YEARS_AHEAD,
    ) -> None:
        self.always_open = always_open
        anchor = today or datetime.now(UTC).date()
        self._default_first = anchor - timedelta(days=366 * years_back)
        self._default_last = anchor + timedelta(days=366 * years_ahead)
        self._tables: dict[str, SessionTable] = {}
        self._lock = threading.Lock()

    def table(self, calendar: str, covering: float | None = None) -> SessionTable:
        """The precomputed sessions of `calendar`, widened if needed to cover epoch `covering`."""
        table = self._tables.get(calendar)
        if table is not None and (covering is None or table.covers(covering)):
            return table
        with self._lock:
            table = self._tables.get(calendar)
            if table is not None and (covering is None or table.covers(covering)):
                return table
            first = self._default_first if table is None else table.first_trade_date
            last = self._default_last if table is None else table.last_trade_date
            if covering is not None:
                day = datetime.fromtimestamp(covering, UTC).date()
                first = min(first, day - _EXTENSION_MARGIN)
                last = max(last, day + _EXTENSION_MARGIN)
            table = build_session_table(calendar, first, last)
            self._tables[calendar] = table
            return table

    def is_open(self, calendar: str, at: datetime) -> bool:
        if self.always_open:
            return True
        epoch = _epoch(at)
        return self.table(calendar, epoch).is_open(epoch)

    def trading_day_start(self, calendar: str, at: datetime) -> datetime:
        """Start of the trading session `at` belongs to (CME: 17:00 CT the evening before).

        In a break or over a weekend or holiday, the session that most recently began: the trading
        day that just ended still counts until the next one opens.
        """
        epoch = _epoch(at)
        table = self.table(calendar, epoch)
        return datetime.fromtimestamp(table.opens[table.session_index(epoch)], UTC)

    def next_trading_day_start(self, calendar: str, at: datetime) -> datetime:
        """The first session open strictly after `at`: when a new trading day begins."""
        epoch = _epoch(at)
        table = self.table(calendar, epoch)
        if table.session_index(epoch) + 1 >= len(table.opens):
            table = self.table(calendar, table.closes[-1] + _EXTENSION_MARGIN.total_seconds())
        return datetime.fromtimestamp(table.opens[table.session_index(epoch) + 1], UTC)


_shared_lock = threading.Lock()
_shared: MarketHours | None = None


def shared_market_hours() -> MarketHours:
    """The process-wide real-calendar instance behind the module-level functions."""
    global _shared
    if _shared is None:
        with _shared_lock:
            if _shared is None:
                _shared = MarketHours()
    return _shared


def is_open(calendar: str, at_utc: datetime) -> bool:
    return shared_market_hours().is_open(calendar, at_utc)


def trading_day_start(calendar: str, at_utc: datetime) -> datetime:
    return shared_market_hours().trading_day_start(calendar, at_utc)
