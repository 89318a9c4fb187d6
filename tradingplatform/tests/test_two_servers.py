"""The platform on several machines, in miniature: two daphne servers and two Celery workers on
one PostgreSQL and one Redis. Approvals raced across both web servers execute exactly once; an
event reaches websockets on both servers whichever one published it; cycles spread over both
workers never overlap for a client (the recorded cycle rows say so)."""
from __future__ import annotations

import contextlib
import json
import re
import threading
import time
import urllib.error
import urllib.request

import pytest
from django.contrib.auth import get_user_model
from django.db import connections
from django.utils import timezone
from django_tenants.utils import tenant_context
from rest_framework_simplejwt.tokens import AccessToken

from agents.models import AgentCycle, Proposal
from agents.tasks import agent_cycle_task
from agents.tests.books import buy_futures, configure
from brokers.models import Order
from tradingplatform.tests.servers import Websocket, celery_worker, daphne_server, subprocess_env_for_tests

GUARD_SECONDS = 120  # failure guards only

# The database is set up for these tests; what the servers must see is written by `_committed`.
pytestmark = pytest.mark.django_db


def _committed(work):
    """`work()` on a connection of its own (a thread's), outside the test's transaction: what it
    writes commits at once, so the servers (other processes) see it. Returns what it returns."""
    outcome: dict = {}

    def run() -> None:
        try:
            outcome["value"] = work()
        except BaseException as exc:  # re-raised in the test's thread
            outcome["error"] = exc
        finally:
            connections.close_all()

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(GUARD_SECONDS)
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


@pytest.fixture(scope="module")
def two_of_each(django_db_setup, django_db_blocker, tmp_path_factory):
    """Two daphne ports and two workers' log files."""
    env = subprocess_env_for_tests()
    logs = [tmp_path_factory.mktemp("workers") / f"worker-{n}.log" for n in (1, 2)]
    with contextlib.ExitStack() as stack:
        ports = [stack.enter_context(daphne_server(env)) for _ in range(2)]
        for n, log in enumerate(logs, start=1):
            stack.enter_context(celery_worker(env, name=f"twin{n}", log=log))
        yield ports, logs


def _token(user) -> str:
    return str(AccessToken.for_user(get_user_model().objects.get(pk=user.pk)))


def _post(port: int, path: str, token: str) -> int:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method="POST", data=b"",
                                     headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, timeout=GUARD_SECONDS) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def _executed_event(ws: Websocket, trade_id: str) -> dict:
    """Reads the stream (past the replay of recent events) up to the proposal's execution."""
    while True:
        opcode, payload = ws.frame()
        assert opcode == 1, f"the stream closed: {opcode} {payload!r}"
        event = json.loads(payload)
        proposal = event["data"].get("proposal") or {}
        if event["type"] == "proposal" and proposal.get("trade_id") == trade_id and proposal["status"] == "executed":
            return event


def test_racing_approvals_across_two_servers_execute_once_and_both_servers_stream_it(two_of_each, django_db_setup):
    from agents.tests.test_services import _cycle, _net_delta  # (imported here, as agents' API tests do)

    (port_a, port_b), _logs = two_of_each
    race = django_db_setup["race"]

    def pending_proposal():
        configure(race, band={"method": "fixed", "width": 0.5},
                  risk_limits={"max_net_delta": 1000, "max_order_contracts": 100, "max_leg_contracts": 100,
                               "max_orders_per_minute": 100})
        if abs(_net_delta(race)) < 2:
            # 5, not the 3 of agents' own race test: the duplicate-order guard (30 s) would refuse
            # either test's orders when pytest-django runs them close together
            buy_futures(race, 5, client_order_id=f"twin-drift-{timezone.now().timestamp()}")
        (proposal,) = _cycle(race, f"twin-{timezone.now().timestamp()}").proposals
        return proposal, _token(race.trader), _token(race.viewer)

    proposal, trader, viewer = _committed(pending_proposal)
    trade_id = str(proposal.pk)
    streams = [Websocket(port, f"/clients/race/stream?token={viewer}") for port in (port_a, port_b)]
    try:
        assert [ws.status for ws in streams] == [101, 101]
        time.sleep(0.3)  # the consumers join their groups right after the handshake
        barrier = threading.Barrier(20)
        codes: list[tuple[int, int]] = []

        def approve(port: int) -> None:
            barrier.wait()
            codes.append((port, _post(port, f"/clients/race/agent/approve/{trade_id}", trader)))

        threads = [threading.Thread(target=approve, args=((port_a, port_b)[n % 2],)) for n in range(20)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(GUARD_SECONDS)
        assert sorted(code for _, code in codes) == [200] + [409] * 19, codes
        # the execution's event reaches the stream on both servers, one of which did not execute it
        for ws in streams:
            assert _executed_event(ws, trade_id)["client_id"] == "race"
    finally:
        for ws in streams:
            ws.close()

    def outcome():
        with tenant_context(race.client):
            orders = Order.objects.filter(client_order_id=proposal.client_order_id).count()
            return orders, Proposal.objects.get(pk=proposal.pk).status

    assert _committed(outcome) == (1, Proposal.Status.EXECUTED)


def _taken(log) -> list[str]:
    """The outcomes of the cycle tasks this worker ran."""
    return re.findall(r"Task agents\.cycle\[[^\]]+\] succeeded in [\d.e-]+s: '([^']*)'", log.read_text())


def _finished(log) -> list[str]:
    """The outcomes of the cycle tasks this worker finished ("completed" or why it skipped); a
    task that found the client's worker slot taken and sent itself again has not finished."""
    return [outcome for outcome in _taken(log) if not outcome.startswith("requeued")]


def test_cycles_spread_over_two_workers_never_overlap_for_a_client(two_of_each, django_db_setup):
    _ports, logs = two_of_each
    race = django_db_setup["race"]
    before = sum(len(_finished(log)) for log in logs)
    prefix = f"twin-cycle-{timezone.now().timestamp()}"
    keys = [f"{prefix}-{n}" for n in range(12)]

    def send():
        with tenant_context(race.client):
            for key in keys:
                agent_cycle_task.delay("race", key)

    _committed(send)
    deadline = time.monotonic() + GUARD_SECONDS
    while sum(len(_finished(log)) for log in logs) - before < len(keys):
        assert time.monotonic() < deadline, [log.read_text()[-1500:] for log in logs]
        time.sleep(0.2)

    def recorded():
        with tenant_context(race.client):
            return list(AgentCycle.objects.filter(key__startswith=prefix).order_by("started_at"))

    cycles = _committed(recorded)
    assert len(cycles) == len(keys), [(cycle.key, cycle.status) for cycle in cycles]
    assert all(cycle.status == AgentCycle.Status.COMPLETED for cycle in cycles), [c.status for c in cycles]
    for earlier, later in zip(cycles, cycles[1:], strict=False):
        assert earlier.finished_at <= later.started_at, (earlier.key, later.key)
    assert all(_taken(log) for log in logs), "both workers took cycle tasks"
