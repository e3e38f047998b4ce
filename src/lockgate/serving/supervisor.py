"""Run a server as a child process and give it the drain that gunicorn's master has.

Granian and uWSGI are started as subprocesses, in a process group of their
own, by this small supervisor, which owns the signals:

- SIGTERM: raise the drain flag (``/readyz`` answers 503 at once), keep the
  server serving for ``drain_delay`` seconds, then ask it for its graceful
  stop (each server has its own way) and wait ``graceful_timeout`` seconds
  (plus a 5-second margin) before killing the group.
- SIGINT (Ctrl-C): no drain, the server's fast stop.

While the server runs, the supervisor watches the server's direct children
(its workers, through ``/proc``) and marks each one that exits dead for
Prometheus' multiprocess mode, as gunicorn's ``child_exit`` hook does: a
crashed or recycled worker's live gauges leave the sums.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .options import ServeOptions
from .rundir import configure_supervisor_logs, log, mark_dead, mark_draining

__all__ = ["supervise"]

#: Seconds between two looks at the server's workers.
_WATCH_EVERY = 0.1
#: Seconds past ``graceful_timeout`` before the group is killed.
_MARGIN = 5.0


def supervise(
    command: Sequence[str],
    options: ServeOptions,
    graceful_stop: Callable[[subprocess.Popen[bytes]], None],
    name: str,
) -> int:
    """Run ``command`` until it exits or a signal stops it; returns its exit status.

    :param graceful_stop: asks the running server to stop accepting and let
        its requests in flight finish.
    :param name: the server, for the log lines.
    """
    configure_supervisor_logs()
    process = subprocess.Popen(command, process_group=0)
    workers = _Workers(process.pid)
    stopping: list[int] = []

    def on_signal(signum: int, frame: Any) -> None:
        stopping.append(signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        while process.poll() is None and not stopping:
            workers.watch()
            time.sleep(_WATCH_EVERY)
        if not stopping:
            return process.returncode
        if stopping[0] == signal.SIGINT:
            log.info("SIGINT: stopping %s now", name)
            process.send_signal(signal.SIGINT)
        else:
            mark_draining()
            log.info("SIGTERM: /readyz is 503, draining for %ss", options.drain_delay)
            _wait(process, workers, options.drain_delay)
            if process.poll() is None:
                log.info(
                    "drained: %s stops accepting, %ss for requests in flight",
                    name,
                    options.graceful_timeout,
                )
                graceful_stop(process)
        if _wait(process, workers, options.graceful_timeout + _MARGIN) is None:
            log.warning("%s did not stop in time: killing it", name)
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            return 1
        return process.returncode
    finally:
        workers.forget_all()


def _wait(process: subprocess.Popen[bytes], workers: _Workers, seconds: float) -> int | None:
    """Wait up to ``seconds`` for the server to exit, watching its workers."""
    deadline = time.monotonic() + seconds
    while process.poll() is None and time.monotonic() < deadline:
        workers.watch()
        time.sleep(_WATCH_EVERY)
    return process.poll()


class _Workers:
    """The server's child processes seen so far; those that vanish are marked dead."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.alive: set[int] = set()

    def watch(self) -> None:
        now = self._children()
        for pid in self.alive - now:
            if self._gone(pid):
                mark_dead(pid)
            else:  # missed in this look (its forking thread just exited): still ours
                now.add(pid)
        self.alive = now

    def forget_all(self) -> None:
        for pid in self.alive:
            mark_dead(pid)
        self.alive = set()

    def _children(self) -> set[int]:
        # Linux lists a process's children under the thread that forked each.
        children: set[int] = set()
        try:
            tasks = list(Path(f"/proc/{self.pid}/task").iterdir())
        except OSError:  # the server has exited, or this is not Linux
            return children
        for task in tasks:
            try:
                children.update(int(pid) for pid in (task / "children").read_text().split())
            except OSError:  # that thread has just exited
                continue
        return children

    def _gone(self, pid: int) -> bool:
        """``pid`` is no longer the server's child (exited and reaped)."""
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return True
        # Field 4, after the parenthesised name (which may hold spaces), is the parent.
        return int(stat.rpartition(")")[2].split()[1]) != self.pid
