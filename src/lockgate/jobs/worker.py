"""One Celery worker process for the jobs of several services.

``lockgate worker`` builds the services' Flask apps, puts each one's task on
one Celery app (each task runs in its own service's app context) and runs
Celery's worker on their queues, with the prefork pool (a child process per
concurrent job, so the hard time limit can kill a stuck one). Before it
consumes, it declares each queue's dead-letter queue; once it is ready, its
master runs every service's outbox relay, so jobs accepted by a web process
that died before its relay published them are published by the worker.
Each child disposes of the database pools it inherited.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Sequence

from celery import Celery, signals
from flask import Flask

from .extension import Jobs, get_jobs, make_celery

__all__ = ["build_worker", "run_worker"]


def build_worker(apps: Sequence[Flask]) -> tuple[Celery, list[Jobs]]:
    """The worker's Celery app serving the jobs of ``apps``."""
    served = [get_jobs(app) for app in apps if "lockgate.jobs" in app.extensions]
    if not served:
        raise ValueError("none of these services has jobs (lockgate.jobs.Jobs)")
    queues = [jobs.queue for jobs in served]
    celery = make_celery("lockgate-worker", served[0].app.config, queues)
    for jobs in served:
        jobs.register(celery)

    @signals.worker_init.connect(weak=False)
    def declare(**_: object) -> None:
        with celery.connection_for_write() as connection:
            channel = connection.default_channel
            for jobs in served:
                jobs.queue.bind(channel).declare()
                jobs.dead_queue.bind(channel).declare()

    @signals.worker_ready.connect(weak=False)
    def relay(**_: object) -> None:
        for jobs in served:
            jobs.start_relay()

    @signals.worker_process_init.connect(weak=False)
    def fresh_pools(**_: object) -> None:
        for jobs in served:
            jobs.store.engine.dispose(close=False)

    @signals.worker_shutdown.connect(weak=False)
    def stop(**_: object) -> None:
        for jobs in served:
            jobs.relay.stop()

    return celery, served


def run_worker(
    apps: Sequence[Flask],
    *,
    concurrency: int = 2,
    pool: str = "prefork",
    loglevel: str = "INFO",
    name: str | None = None,
) -> None:
    """Run the worker in this process until SIGTERM (warm stop: running jobs
    finish; the hard time limit bounds how long) or SIGQUIT."""
    celery, served = build_worker(apps)
    argv = [
        "worker",
        f"--queues={','.join(jobs.queue.name for jobs in served)}",
        f"--concurrency={concurrency}",
        f"--pool={pool}",
        f"--loglevel={loglevel}",
        f"--hostname={name or f'lockgate-{os.getpid()}@{socket.gethostname()}'}",
        "--without-gossip",
        "--without-mingle",
    ]
    celery.worker_main(argv)
