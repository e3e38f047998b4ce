"""The fleet's job workers as child processes of ``lockgate run`` and ``serve``.

Each replica of each ``[services.<worker>]`` runs ``lockgate worker`` in a
process group of its own, with the fleet's environment (the issuer, the
services' clients, the broker), and is told by the kernel to stop (SIGTERM,
``PR_SET_PDEATHSIG``) if its parent dies without stopping it. A replica that
exits while the fleet runs is started again, after a pause that doubles up
to half a minute while it keeps failing (as a Deployment's backoff); on stop,
each gets SIGTERM (Celery's warm stop: running jobs finish) and, past the
grace period or at a second interrupt, SIGKILL: a job cut off is run again
from its lease, never lost.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from .manifest import Fleet

__all__ = ["WorkerProcesses"]

#: prctl(2) option: the signal a process gets when its parent dies.
_PR_SET_PDEATHSIG = 1
#: Seconds between restarts of a replica that keeps failing, at most.
_MOST_BACKOFF = 30.0


def _child_setup() -> None:
    """In the child before exec: a session of its own, and SIGTERM when the
    parent dies (Linux; elsewhere the parent's stop() is all there is)."""
    os.setsid()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class WorkerProcesses:
    """Starts, keeps up and stops the worker replicas of a fleet."""

    def __init__(self, fleet: Fleet, manifest: Path, *, grace: float = 30.0) -> None:
        self.fleet = fleet
        self.manifest = manifest
        self.grace = grace
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._watch: threading.Thread | None = None
        self._backoff: dict[str, tuple[float, float]] = {}
        self._started: dict[str, float] = {}

    def _command(self, worker: str, replica: int) -> list[str]:
        return [
            sys.executable, "-m", "lockgate.fleet", "worker",
            "--name", worker, "--replica", str(replica), "--manifest", str(self.manifest),
        ]  # fmt: skip

    def _spawn(self, key: str) -> None:
        worker, _, replica = key.rpartition("#")
        self._started[key] = time.monotonic()
        self.processes[key] = subprocess.Popen(
            self._command(worker, int(replica)),
            preexec_fn=_child_setup,
        )

    def start(self) -> list[int]:
        with self._lock:
            for worker in self.fleet.workers:
                for replica in range(1, worker.replicas + 1):
                    self._spawn(f"{worker.name}#{replica}")
        if self.processes:
            self._watch = threading.Thread(target=self._keep_up, daemon=True)
            self._watch.start()
        return [process.pid for process in self.processes.values()]

    def _keep_up(self) -> None:
        while not self._stopping.wait(1.0):
            now = time.monotonic()
            with self._lock:
                if self._stopping.is_set():
                    return
                for key, process in list(self.processes.items()):
                    if process.poll() is None:
                        continue
                    pause, due = self._backoff.get(key, (0.5, 0.0))
                    if due == 0.0 and now - self._started.get(key, now) > 60:
                        pause = 0.5  # it had run a while: a fresh failure
                    if due == 0.0:
                        # Failing again soon after its last start: wait longer.
                        self._backoff[key] = (min(_MOST_BACKOFF, pause * 2), now + pause)
                        print(f"worker {key} exited ({process.returncode}); starting it again "
                              f"in {pause:.0f} s", file=sys.stderr)  # fmt: skip
                    elif now >= due:
                        self._backoff[key] = (pause, 0.0)
                        self._spawn(key)

    def stop(self) -> None:
        with self._lock:
            self._stopping.set()
            processes = list(self.processes.values())
        for process in processes:
            if process.poll() is None:
                # The master only: it stops its children once their jobs end.
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.grace
        try:
            for process in processes:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(max(0.1, deadline - time.monotonic()))
        except KeyboardInterrupt:
            pass  # a second Ctrl-C: no more waiting
        for process in processes:
            if process.poll() is None:
                _signal(process, signal.SIGKILL)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(5)


def _signal(process: subprocess.Popen[bytes], number: int) -> None:
    """``number`` to the replica's whole group: the master and its children."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, number)
