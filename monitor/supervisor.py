"""The engine's supervision tree: every long-lived task is watched, none dies unseen.

Each task has a stated policy for its death (an exception, or returning before it was
asked to stop):

- ``stop``: the engine stops, in stages, and exits with :data:`EXIT_TASK_FAILED`.
  For tasks whose memory may be ahead of the store (ingest, the rules' ticks): only a
  fresh start from the store repairs that, and systemd restarts the process.
- ``restart``: the task starts again after a backoff (1 s, doubling to 60 s; back to
  1 s once it has run for ``stable_after``). For tasks that keep their work in the
  store or recompute it (notifications, SLA figures).

Every death is logged with its traceback at once, counted in
``driftsvakt_engine_task_failures_total{task}``, and shown in
``driftsvakt_engine_task_up{task}``; ``/readyz`` reports a task unhealthy while it is
down and for ``healthy_after`` seconds after a restart, so a task that keeps dying
never looks ready. Prometheus alerts on those series (deploy/prometheus), a path that
does not depend on the engine's own notifications.

Tasks are stopped in the order they were added, each within its time.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Final, Literal

import structlog
from prometheus_client import CollectorRegistry, Counter, Gauge

__all__ = ["EXIT_OK", "EXIT_TASK_FAILED", "Policy", "Supervisor", "TaskRun"]

log = structlog.get_logger(__name__)

EXIT_OK: Final = 0
EXIT_TASK_FAILED: Final = 1

Policy = Literal["stop", "restart"]
TaskRun = Callable[[asyncio.Event], Awaitable[None]]
"""A long-lived task: runs until the event it is given is set."""

BACKOFF_FIRST: Final = 1.0
BACKOFF_MAX: Final = 60.0


@dataclass(eq=False)
class _Child:
    name: str
    run: TaskRun
    policy: Policy
    stop_within: float
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    running: bool = False
    failures: int = 0
    failed_at: float | None = None
    started_at: float = 0.0


class Supervisor:
    """Runs the engine's tasks under their policies; :meth:`run` returns the exit code."""

    def __init__(self, registry: CollectorRegistry, *, healthy_after: float = 30.0,
                 stable_after: float = 300.0) -> None:
        self.healthy_after = healthy_after
        self.stable_after = stable_after
        self._children: list[_Child] = []
        self._fatal = asyncio.Event()
        self.failed: str | None = None
        self._up = Gauge("driftsvakt_engine_task_up",
                         "1 while the engine task runs", ["task"], registry=registry)
        self._failures = Counter("driftsvakt_engine_task_failures_total",
                                 "Deaths of an engine task (each logged with its cause)",
                                 ["task"], registry=registry)
        # Its changes show an engine that systemd keeps restarting (a ``stop`` task
        # that dies again after each start).
        Gauge("driftsvakt_engine_start_time_seconds", "When this engine process started",
              registry=registry).set_to_current_time()

    def add(self, name: str, run: TaskRun, policy: Policy, *, stop_within: float = 6.0) -> None:
        """Watch ``run`` under ``policy``; stopped after the tasks added before it."""
        self._children.append(_Child(name, run, policy, stop_within))
        self._up.labels(name).set(0)
        self._failures.labels(name)  # a zero, not a missing series

    def health(self) -> dict[str, bool]:
        """Per task: running, and not restarted within ``healthy_after`` seconds."""
        now = time.monotonic()
        return {f"task:{c.name}": c.running and (
            c.failed_at is None or now - c.failed_at >= self.healthy_after)
            for c in self._children}

    async def run(self, stopping: asyncio.Event) -> int:
        """Run every task until ``stopping`` is set or a ``stop`` task dies; then stop
        them in order. Returns :data:`EXIT_OK` or :data:`EXIT_TASK_FAILED`."""
        async with asyncio.TaskGroup() as tg:
            watchers = [tg.create_task(self._watch(c), name=f"watch-{c.name}")
                        for c in self._children]
            wake = [asyncio.create_task(stopping.wait()), asyncio.create_task(self._fatal.wait())]
            try:
                await asyncio.wait(wake, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for waiter in wake:
                    waiter.cancel()
            for child, watcher in zip(self._children, watchers, strict=True):
                child.stop.set()
                try:
                    await asyncio.wait_for(asyncio.shield(watcher), child.stop_within)
                except TimeoutError:
                    log.warning("task_stop_timeout", task=child.name,
                                seconds=child.stop_within)
                    watcher.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await watcher
        return EXIT_OK if self.failed is None else EXIT_TASK_FAILED

    async def _watch(self, child: _Child) -> None:
        delay = BACKOFF_FIRST
        up = self._up.labels(child.name)
        while True:
            child.running = True
            child.started_at = time.monotonic()
            up.set(1)
            error: BaseException | None = None
            try:
                await child.run(child.stop)
            except asyncio.CancelledError:
                child.running = False
                up.set(0)
                raise
            except Exception as exc:
                error = exc
            child.running = False
            up.set(0)
            if error is None and child.stop.is_set():
                return
            if error is None:
                error = RuntimeError("the task returned without being asked to stop")
            child.failures += 1
            child.failed_at = time.monotonic()
            self._failures.labels(child.name).inc()
            if child.policy == "stop" or child.stop.is_set():
                log.error("task_failed", task=child.name, policy=child.policy,
                          consequence="engine stops", exc_info=error)
                if self.failed is None:
                    self.failed = child.name
                self._fatal.set()
                return
            if child.failed_at - child.started_at >= self.stable_after:
                delay = BACKOFF_FIRST
            log.error("task_failed", task=child.name, policy=child.policy,
                      consequence=f"restarts in {delay:g} s", failures=child.failures,
                      exc_info=error)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(child.stop.wait(), delay)
            if child.stop.is_set():
                return
            delay = min(delay * 2, BACKOFF_MAX)
            log.info("task_restarted", task=child.name, failures=child.failures)
