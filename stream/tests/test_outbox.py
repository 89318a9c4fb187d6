"""The stream's outbox (tradingplatform.events on stream.models): events are written with their
change, numbered per client without gaps, fanned out once committed, sent later by the relay when
Redis missed them, pruned after the retention; fills are streamed once each, recovered ones too."""
from datetime import timedelta
from decimal import Decimal

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import transaction
from django.test import TestCase, override_settings
from django.utils import timezone
from django_tenants.utils import tenant_context

from stream.models import StreamEvent
from tradingplatform.events import client_group, events_prune, events_relay, last_seq, publish_event
from tradingplatform.tests.servers import free_port


class Boom(Exception):
    pass


@pytest.fixture
def listener(alpha):
    """A channel in alpha's group: what the fan-out delivers to a stream."""
    layer = get_channel_layer()
    channel = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)(client_group("alpha"), channel)
    yield lambda: async_to_sync(layer.receive)(channel)["event"]
    async_to_sync(layer.group_discard)(client_group("alpha"), channel)


def test_seq_is_strictly_increasing_and_a_rolled_back_change_takes_its_number_back(alpha):
    first = publish_event(client_id="alpha", type="risk", data={"n": 1})
    with pytest.raises(Boom), transaction.atomic():
        publish_event(client_id="alpha", type="risk", data={"n": "rolled back"})
        raise Boom
    second = publish_event(client_id="alpha", type="risk", data={"n": 2, "at": timezone.now()})
    assert second["seq"] == first["seq"] + 1 == last_seq(client_id="alpha")
    stored = StreamEvent.objects.filter(client_id="alpha", seq__gte=first["seq"]).order_by("seq")
    assert [row.as_event() for row in stored] == [first, second]
    assert set(second) == {"type", "client_id", "seq", "ts", "data"} and isinstance(second["data"]["at"], str)


def test_each_client_has_its_own_numbers(alpha, beta):
    before = last_seq(client_id="beta")
    publish_event(client_id="alpha", type="risk", data={})
    assert publish_event(client_id="beta", type="risk", data={})["seq"] == before + 1


def test_an_event_is_fanned_out_once_its_transaction_commits_and_not_before(listener):
    with TestCase.captureOnCommitCallbacks(execute=False) as callbacks:
        event = publish_event(client_id="alpha", type="halt", data={"reason": "commit"})
    assert len(callbacks) == 1
    assert not StreamEvent.objects.get(client_id="alpha", seq=event["seq"]).fanned_out
    callbacks[0]()  # what the commit runs
    assert listener() == event
    assert StreamEvent.objects.get(client_id="alpha", seq=event["seq"]).fanned_out


def test_redis_down_delays_the_fan_out_never_the_change_and_the_relay_sends_it_later(listener):
    unreachable = f"redis://127.0.0.1:{free_port()}/0"
    layer = settings.CHANNEL_LAYERS["default"]
    dead_layer = {"default": dict(layer, CONFIG=dict(layer["CONFIG"], hosts=[
        dict(layer["CONFIG"]["hosts"][0], address=unreachable)]))}
    with override_settings(CHANNEL_LAYERS=dead_layer, REDIS_URL=unreachable), \
            TestCase.captureOnCommitCallbacks(execute=True):
        event = publish_event(client_id="alpha", type="trade", data={"fill_id": "while-down"})
    assert not StreamEvent.objects.get(client_id="alpha", seq=event["seq"]).fanned_out
    assert events_relay(grace_seconds=0) >= 1
    received = listener()
    while received["seq"] != event["seq"]:  # (other tests' committed leftovers come first)
        received = listener()
    assert received == event
    assert StreamEvent.objects.get(client_id="alpha", seq=event["seq"]).fanned_out
    assert events_relay(grace_seconds=0) == 0 or not StreamEvent.objects.filter(
        client_id="alpha", fanned_out=False).exists()


def test_the_relay_leaves_what_was_just_published_to_its_own_commit(alpha):
    with TestCase.captureOnCommitCallbacks(execute=False):
        event = publish_event(client_id="alpha", type="risk", data={})
    events_relay()  # the default grace: not yet
    assert not StreamEvent.objects.get(client_id="alpha", seq=event["seq"]).fanned_out


def test_events_older_than_the_retention_are_pruned_and_the_numbers_go_on(alpha):
    old = publish_event(client_id="alpha", type="risk", data={"age": "old"})
    kept = publish_event(client_id="alpha", type="risk", data={"age": "new"})
    StreamEvent.objects.filter(client_id="alpha", seq=old["seq"]).update(
        ts=timezone.now() - timedelta(hours=settings.STREAM_RETENTION_HOURS, minutes=1))
    assert events_prune() >= 1
    assert not StreamEvent.objects.filter(client_id="alpha", seq=old["seq"]).exists()
    assert StreamEvent.objects.filter(client_id="alpha", seq=kept["seq"]).exists()
    assert publish_event(client_id="alpha", type="risk", data={})["seq"] == kept["seq"] + 1


def test_every_recorded_fill_is_streamed_once_as_a_trade_recovered_ones_too(alpha):
    """A worker killed after the fills were recorded and before they were streamed: the next book
    sync streams them (trades_stream runs in its transaction), and never twice."""
    from brokers.models import Fill
    from risk.services import trades_stream

    with tenant_context(alpha.client):
        fill = Fill.objects.create(fill_id="recovered-1", client_order_id="killed-worker", instrument_key="ES",
                                   instrument={}, side="BUY", quantity=2, price=Decimal("5000.25"),
                                   commission=Decimal("1.10"), executed_at=timezone.now())
        with transaction.atomic():
            assert trades_stream(client=alpha.client) >= 1
        with transaction.atomic():
            assert trades_stream(client=alpha.client) == 0
    trades = [row.data for row in StreamEvent.objects.filter(client_id="alpha", type="trade")]
    assert [trade for trade in trades if trade["fill_id"] == fill.fill_id] == [
        {"fill_id": "recovered-1", "client_order_id": "killed-worker", "instrument_key": "ES", "side": "BUY",
         "quantity": 2, "price": "5000.250000"}]


def test_a_trade_event_without_a_fill_id_hides_no_unstreamed_fill(alpha):
    """The unstreamed fills are an anti-join on the events' fill ids: an event whose data has no
    fill id (a NULL in NOT IN would match nothing) must not hide a fill, and a streamed one stays
    streamed."""
    from brokers.models import Fill
    from risk.services import trades_stream

    with tenant_context(alpha.client):
        for fill_id in ("anti-1", "anti-2"):
            Fill.objects.create(fill_id=fill_id, client_order_id="anti", instrument_key="ES", instrument={},
                                side="SELL", quantity=1, price=Decimal("5001.00"), commission=Decimal("1.10"),
                                executed_at=timezone.now())
        with transaction.atomic():
            publish_event(client_id="alpha", type="trade", data={"note": "no fill id"})
            publish_event(client_id="alpha", type="trade", data={"fill_id": "anti-1"})
        with transaction.atomic():
            trades_stream(client=alpha.client)
        with transaction.atomic():
            assert trades_stream(client=alpha.client) == 0
    streamed = [row.data.get("fill_id") for row in StreamEvent.objects.filter(client_id="alpha", type="trade")]
    assert streamed.count("anti-1") == 1 and streamed.count("anti-2") == 1
