"""The supervisor's policies, with real (short-lived) child processes and an explicit clock."""
from __future__ import annotations

import sys
import time

from django.conf import settings

from tradingplatform.supervisor import ChildProcess, Process, Supervisor, backoff_seconds

GUARD_SECONDS = 30


def _supervisor(*specs: Process) -> tuple[Supervisor, list[str]]:
    said: list[str] = []
    children = [ChildProcess(spec, cwd=settings.BASE_DIR, env={}) for spec in specs]
    supervisor = Supervisor(servers=[], processes=children, say=said.append)
    for state in supervisor.processes:
        supervisor.start(state, again=False, now=999.0)
    return supervisor, said


def _exited(supervisor: Supervisor) -> None:
    deadline = time.monotonic() + GUARD_SECONDS
    for state in supervisor.processes:
        while state.unit.exit_description() is None:
            assert time.monotonic() < deadline
            time.sleep(0.05)


def _exits(code: int) -> list[str]:
    return [sys.executable, "-c", f"raise SystemExit({code})"]


def test_the_backoff_doubles_up_to_thirty_seconds():
    assert [backoff_seconds(n) for n in range(1, 8)] == [1, 2, 4, 8, 16, 30, 30]


def test_each_policy_decides_whether_an_ended_process_comes_back():
    supervisor, said = _supervisor(
        Process("always", _exits(0), restart="always"),
        Process("failed", _exits(3), restart="on-failure"),
        Process("succeeded", _exits(0), restart="on-failure"),
        Process("never", _exits(3), restart="never"),
    )
    _exited(supervisor)
    supervisor.tick(1000.0)
    assert "always exited with code 0; restarting it in 1 s (restart 1)" in said
    assert "failed exited with code 3; restarting it in 1 s (restart 1)" in said
    assert "succeeded exited with code 0; its policy is not to restart it" in said
    assert "never exited with code 3; its policy is not to restart it" in said
    supervisor.tick(1000.5)
    assert not any("is back" in line for line in said)  # not before its back-off
    supervisor.tick(1001.0)
    assert sorted(line.split(" (pid")[0] for line in said if "is back" in line) == ["always is back", "failed is back"]
    _exited(supervisor)  # they end again at once: the next wait doubles
    supervisor.tick(1002.0)
    assert "failed exited with code 3; restarting it in 2 s (restart 2)" in said
    supervisor.stop_all()


def test_stop_all_ends_every_process():
    sleeper = [sys.executable, "-c", "import time; time.sleep(600)"]
    supervisor, said = _supervisor(Process("one", sleeper), Process("two", sleeper))
    supervisor.stop_all()
    assert said[-1] == "stopping two, one ..."
    assert all(state.unit.process.poll() is not None for state in supervisor.processes)
