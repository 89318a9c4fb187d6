"""The cycle schedule, pure: slots at fixed multiples of the interval, queued once and ahead."""
from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from agents import schedule

MOMENT = datetime(2027, 2, 10, 15, 0, tzinfo=UTC)


def test_slots_are_an_interval_apart_whatever_a_cycle_takes():
    starts = [schedule.slot_at(client_id="alpha", interval=5, number=n).start for n in range(100, 104)]
    assert [(b - a).total_seconds() for a, b in zip(starts, starts[1:], strict=False)] == [5.0, 5.0, 5.0]


def test_clients_with_one_interval_are_spread_over_it():
    phases = {schedule.slot_at(client_id=f"client{n}", interval=60, number=0).start for n in range(20)}
    assert len(phases) > 15


@given(seconds=st.floats(min_value=0, max_value=10**6), interval=st.integers(min_value=5, max_value=86_400),
       horizon=st.floats(min_value=0, max_value=30))
def test_the_scheduler_queues_the_running_slot_and_every_one_starting_before_its_next_look(seconds, interval,
                                                                                           horizon):
    now = MOMENT + timedelta(seconds=seconds)
    slots = schedule.slots_to_queue(client_id="alpha", interval=interval, now=now,
                                    horizon=timedelta(seconds=horizon))
    assert slots[0].start <= now < slots[0].end
    assert all(slot.start <= now + timedelta(seconds=horizon) for slot in slots)
    assert slots[-1].end > now + timedelta(seconds=horizon)  # the next is left for the next look
    assert len({slot.key for slot in slots}) == len(slots)
    assert schedule.next_cycle_at(client_id="alpha", interval=interval, now=now) == slots[0].end
