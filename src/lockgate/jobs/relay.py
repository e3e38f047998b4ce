"""The outbox relay: publishes accepted jobs to the broker, and retries while it is down.

One daemon thread per process and service. It wakes when a request has
accepted a job (right after the commit, so the request itself never waits
on the broker) and every ``LOCKGATE_JOBS_RELAY_INTERVAL`` seconds anyway,
and each time it:

1. reaps: puts back in the outbox the jobs no worker will otherwise run
   (a lease that expired because its worker died; a message a transport lost);
2. publishes the due entries, deleting each only once the broker has it
   (publisher confirms on RabbitMQ). A failure leaves the entry for a later
   try, with a backoff of at most ``_MOST`` seconds, so a broker that comes
   back is used within seconds.

Several relays (every web process and worker runs one) may sweep one outbox:
each entry is held by the one publishing it, and a message published twice is
harmless, since the worker claims jobs by id.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable

from .store import JobStore, OutboxEntry

__all__ = ["Relay"]

log = logging.getLogger("lockgate.jobs")

#: The longest wait between two tries of one entry, in seconds.
_MOST = 5.0


class Relay:
    """Sweeps one service's outbox into the broker."""

    def __init__(
        self,
        store: JobStore,
        publish: Callable[[OutboxEntry], None],
        *,
        interval: float,
        republish_after: float,
    ) -> None:
        self.store = store
        self.publish = publish
        self.interval = interval
        self.republish_after = republish_after
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def start(self) -> None:
        """Start the thread (once per process; a forked child starts its own)."""
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                return
            self._stop.clear()
            self._thread = threading.Thread(
                target=self._run, name=f"lockgate-relay-{self.store.service}", daemon=True
            )
            self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._wake.set()
        thread = self._thread
        if thread is not None:
            thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.sweep()
            except Exception:  # the database away: the next sweep tries again
                log.exception("job relay sweep failed")
            self._wake.wait(self.interval)
            self._wake.clear()

    def sweep(self) -> int:
        """One pass: reap, then publish what is due. Returns how many were published."""
        self.store.reap(republish_after=self.republish_after)
        sent = 0
        while not self._stop.is_set():
            entries = self.store.due()
            if not entries:
                return sent
            for index, entry in enumerate(entries):
                try:
                    self.publish(entry)
                except Exception as error:
                    # The broker is down: this entry and the rest wait for the next try.
                    retry = min(_MOST, 0.5 * 2 ** min(entry.attempts, 4)) * random.uniform(0.5, 1)
                    for waiting in entries[index:]:
                        self.store.unpublished(
                            waiting,
                            f"{type(error).__name__}: {error}",
                            retry if waiting is entry else 0.0,
                        )
                    log.warning("job relay cannot publish (%s); retrying in %.1f s", error, retry)
                    return sent
                self.store.published(entry)
                sent += 1
        return sent
