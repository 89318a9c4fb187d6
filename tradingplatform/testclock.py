"""The test suite's clock: every test process, and every server it starts, lives on one set day.

A test's outcome must not depend on the day it runs. So `make test` never runs on the wall
clock's date: the suite's processes (pytest, and the daphne, Celery worker and beat processes the
tests start) all see the time `SUITE_CLOCK` names, or `DEFAULT_SUITE_CLOCK`, moving forward at
the real rate from there (time-machine's `tick=True`), through `datetime.now`, `time.time` and
everything built on them (`django.utils.timezone.now`, JWT expiry, the simulator's wall clock).

    make test                                       # the default day
    SUITE_CLOCK=2026-12-17T15:00:00Z make test      # the day before a quarterly expiry

How the processes agree: the first process computes the offset between the chosen moment and the
real time and exports it as `SUITE_CLOCK_OFFSET_SECONDS`; each process it starts inherits the
variable and shifts its own clock by the same offset, so all of them read the same time.

Only `ENVIRONMENT=test` processes apply it (see `settings.py`); time-machine is a test
dependency. Time-keeping that does not go through Python's clock is not shifted: PostgreSQL's
`clock_timestamp()` (the audit trail's `created_at`) and Redis' expiry run on the real time,
which is right for them (an audit row records when it was written; expiries are relative).
Tests that need a particular moment still set it themselves (the simulator's manual clock,
`time_machine.travel` inside the test).
"""
from __future__ import annotations

import os
import time
from datetime import UTC, datetime

DEFAULT_SUITE_CLOCK = "2027-02-10T15:00:00+00:00"  # a Wednesday, mid-quarter, markets open
OFFSET_VARIABLE = "SUITE_CLOCK_OFFSET_SECONDS"
_traveller = None


def suite_clock_offset() -> float:
    """Seconds between the suite's clock and the real one (computed once, then inherited)."""
    if OFFSET_VARIABLE not in os.environ:
        chosen = datetime.fromisoformat(os.environ.get("SUITE_CLOCK") or DEFAULT_SUITE_CLOCK)
        if chosen.tzinfo is None:
            chosen = chosen.replace(tzinfo=UTC)
        os.environ[OFFSET_VARIABLE] = repr(chosen.timestamp() - time.time())
    return float(os.environ[OFFSET_VARIABLE])


def suite_clock_apply() -> None:
    """Move this process's clock to the suite's (once per process)."""
    global _traveller
    if _traveller is not None:
        return
    import time_machine

    destination = time.time() + suite_clock_offset()
    _traveller = time_machine.travel(destination, tick=True)
    _traveller.start()
