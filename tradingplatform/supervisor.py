"""The supervisor of `make run`: it keeps every process and embedded server up until Ctrl-C.

Each supervised thing is a `Unit`: something that can be started, asked whether it still runs,
and stopped. A unit that stops on its own is restarted after a back-off that doubles with each
quick failure (1 s, 2 s, 4 s, ... up to 30 s) and starts again from 1 s once the unit has run for a
minute; every death and every restart is said in the log. Only SIGINT (Ctrl-C) or SIGTERM stops
everything: the processes first, newest unit first, then the servers they use.

This module does not import Django (the devstack prepares the environment Django reads).
"""
from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

RestartPolicy = Literal["always", "on-failure", "never"]

BACKOFF_FIRST_SECONDS = 1.0
BACKOFF_MAX_SECONDS = 30.0
STABLE_AFTER_SECONDS = 60.0
STOP_TIMEOUT_SECONDS = 15.0
POLL_SECONDS = 0.2


@dataclass(frozen=True)
class Process:
    """One supervised child process: its name in the log, its command, and when it comes back
    ("always": whatever ended it; "on-failure": unless it exited with code 0; "never")."""

    name: str
    command: Sequence[str]
    restart: RestartPolicy = "always"


class Unit(Protocol):
    name: str
    restart: RestartPolicy

    def start(self) -> str:
        """Start (or start again); return what to say, e.g. "pid 123"."""

    def exit_description(self) -> str | None:
        """None while it runs; once it has stopped, how it ended ("exited with code 1")."""

    def exited_cleanly(self) -> bool:
        """Whether it ended with success (exit code 0); only asked once it has stopped."""

    def stop(self) -> None:
        """Ask it to stop (no-op when it is not running)."""


def describe_returncode(code: int) -> str:
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"


class ChildProcess:
    """A `Process` run as a child of the supervisor."""

    def __init__(self, spec: Process, *, cwd: Path, env: dict[str, str]) -> None:
        self.name = spec.name
        self.restart = spec.restart
        self.spec = spec
        self.cwd = cwd
        self.env = env
        self.process: subprocess.Popen | None = None

    def start(self) -> str:
        self.process = subprocess.Popen(list(self.spec.command), cwd=self.cwd, env=self.env)
        return f"pid {self.process.pid}"

    def exit_description(self) -> str | None:
        if self.process is None or self.process.poll() is None:
            return None
        return describe_returncode(self.process.returncode)

    def exited_cleanly(self) -> bool:
        return self.process is not None and self.process.returncode == 0

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()

    def wait_stopped(self, say: Callable[[str], None]) -> None:
        if self.process is None:
            return
        try:
            self.process.wait(timeout=STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            say(f"{self.name} did not stop in {STOP_TIMEOUT_SECONDS:.0f} s; killing it")
            self.process.kill()
            self.process.wait()


@dataclass
class _State:
    unit: Unit
    started_at: float = 0.0
    failures: int = 0
    restart_due: float | None = None
    given_up: bool = False


def backoff_seconds(failures: int) -> float:
    """The wait before restart number `failures` (1, 2, ...) of a unit that keeps failing quickly."""
    return min(BACKOFF_MAX_SECONDS, BACKOFF_FIRST_SECONDS * 2 ** max(0, failures - 1))


class Supervisor:
    """Watches `servers` (already running: the embedded PostgreSQL and Redis), starts `processes`,
    and restarts whichever stops, until SIGINT or SIGTERM."""

    def __init__(self, *, servers: Sequence[Unit], processes: Sequence[ChildProcess],
                 say: Callable[[str], None]) -> None:
        self.servers = [_State(server, started_at=time.monotonic()) for server in servers]
        self.processes = [_State(process) for process in processes]
        self.states = self.servers + self.processes
        self.say = say
        self.stopping = False

    def _stop_signal(self, signum: int, _frame: object) -> None:
        if not self.stopping:
            self.say(f"{signal.Signals(signum).name} received: stopping everything")
        self.stopping = True

    def start(self, state: _State, *, again: bool, now: float) -> None:
        what = state.unit.start()
        state.started_at = now
        state.restart_due = None
        verb = "is back" if again else "started"
        self.say(f"{state.unit.name} {verb} ({what})")

    def run(self, *, banner: str) -> int:
        signal.signal(signal.SIGINT, self._stop_signal)
        signal.signal(signal.SIGTERM, self._stop_signal)
        for state in self.processes:
            self.start(state, again=False, now=time.monotonic())
        self.say(banner)
        while not self.stopping:
            self.tick(time.monotonic())
            time.sleep(POLL_SECONDS)
        self.stop_all()
        return 0

    def tick(self, now: float) -> None:
        for state in self.states:
            if self.stopping:
                return
            if state.given_up:
                continue
            if state.restart_due is not None:
                if now >= state.restart_due:
                    try:
                        self.start(state, again=True, now=now)
                    except Exception as exc:  # a failed start is one more failure, retried later
                        self._schedule(state, now, f"could not be started ({type(exc).__name__}: {exc})")
                continue
            ended = state.unit.exit_description()
            if ended is None:
                if now - state.started_at >= STABLE_AFTER_SECONDS:
                    state.failures = 0
                continue
            policy = state.unit.restart
            if policy == "never" or (policy == "on-failure" and state.unit.exited_cleanly()):
                self.say(f"{state.unit.name} {ended}; its policy is not to restart it")
                state.given_up = True
                continue
            self._schedule(state, now, ended)

    def _schedule(self, state: _State, now: float, ended: str) -> None:
        state.failures += 1
        delay = backoff_seconds(state.failures)
        state.restart_due = now + delay
        self.say(f"{state.unit.name} {ended}; restarting it in {delay:.0f} s (restart {state.failures})")

    def stop_all(self) -> None:
        """Processes first (they use the servers), newest first; a server is stopped by whoever
        started it (the devstack's context managers), after this returns."""
        children = [state.unit for state in reversed(self.processes)]
        self.say("stopping " + ", ".join(child.name for child in children) + " ...")
        for child in children:
            child.stop()
        for child in children:
            child.wait_stopped(self.say)
