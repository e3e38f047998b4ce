"""The fleet's job workers as child processes of ``lockgate run`` and ``serve``.

Each replica of each ``[services.<worker>]`` runs ``lockgate worker`` in a
process group of its own, with the fleet's environment (the issuer, the
services' clients, the broker). A replica that exits while the fleet runs is
started again after a second (as a Deployment would); on stop, each gets
SIGTERM (Celery's warm stop: running jobs finish) and, past the grace
period, SIGKILL: a job cut off is run again from its lease, never lost.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from .manifest import Fleet

__all__ = ["WorkerProcesses"]


class WorkerProcesses:
    """Starts, keeps up and stops the worker replicas of a fleet."""

    def __init__(self, fleet: Fleet, manifest: Path, *, grace: float = 30.0) -> None:
        self.fleet = fleet
        self.manifest = manifest
        self.grace = grace
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self._stopping = threading.Event()
        self._watch: threading.Thread | None = None

    def _command(self, worker: str, replica: int) -> list[str]:
        return [
            sys.executable, "-m", "lockgate.fleet", "worker",
            "--name", worker, "--replica", str(replica), "--manifest", str(self.manifest),
        ]  # fmt: skip

    def _spawn(self, key: str) -> None:
        worker, _, replica = key.rpartition("#")
        self.processes[key] = subprocess.Popen(
            self._command(worker, int(replica)), start_new_session=True
        )

    def start(self) -> list[int]:
        for worker in self.fleet.workers:
            for replica in range(1, worker.replicas + 1):
                self._spawn(f"{worker.name}#{replica}")
        if self.processes:
            self._watch = threading.Thread(target=self._keep_up, daemon=True)
            self._watch.start()
        return [process.pid for process in self.processes.values()]

    def _keep_up(self) -> None:
        while not self._stopping.wait(1.0):
            for key, process in list(self.processes.items()):
                if process.poll() is not None and not self._stopping.is_set():
                    print(f"worker {key} exited ({process.returncode}); starting it again",
                          file=sys.stderr)  # fmt: skip
                    self._spawn(key)

    def stop(self) -> None:
        self._stopping.set()
        for process in self.processes.values():
            if process.poll() is None:
                # The master only: it stops its children once their jobs end.
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.grace
        for process in self.processes.values():
            try:
                process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _signal(process, signal.SIGKILL)
                process.wait(5)


def _signal(process: subprocess.Popen[bytes], number: int) -> None:
    """``number`` to the replica's whole group: the master and its children."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, number)
