"""``Jobs(app, engine=...)``: a service's background jobs, on Celery, losing nothing.

The Celery app is made from the Flask config as in Flask's own Celery guide
(``celery_init_app`` with a ``FlaskTask`` that runs in the app context), at
``app.extensions["celery"]``; this extension is at
``app.extensions["lockgate.jobs"]``. Keys, with their defaults in
:data:`DEFAULTS` (``LOCKGATE_JOBS_*``, from the environment too):

- ``LOCKGATE_JOBS_BROKER_URL`` (or ``CELERY_BROKER_URL``): ``amqp://`` (quorum
  queues and a dead-letter queue), ``redis://`` (a visibility timeout longer
  than the time limit), or by default kombu's SQLAlchemy transport over a
  SQLite file in the data directory: a real broker and a real worker process
  for ``make run``, never ``task_always_eager``.
- ``LOCKGATE_JOBS_MAX_DELIVERIES``: after this many deliveries a job is
  ``failed`` (and its message dead-lettered on RabbitMQ).
- ``LOCKGATE_JOBS_TIME_LIMIT`` (hard; the soft limit is 90 % of it),
  ``LOCKGATE_JOBS_LEASE`` (how long a worker holds a job between renewals),
  ``LOCKGATE_JOBS_RETRY_BACKOFF``, ``LOCKGATE_JOBS_RELAY_INTERVAL``,
  ``LOCKGATE_JOBS_REPUBLISH_AFTER``, ``LOCKGATE_JOBS_QUEUE_PREFIX``,
  ``LOCKGATE_JOBS_RESULTS_DIR``; and any ``CELERY_*`` key, passed to Celery
  lowercased without the prefix (``CELERY_WORKER_CONCURRENCY``).

Celery's settings here are the reliable ones, not its defaults: a message is
acknowledged after its task ran (``acks_late``), given back when the worker
process dies (``reject_on_worker_lost``), one at a time
(``worker_prefetch_multiplier=1``), under a time limit.
"""

from __future__ import annotations

import logging
import os
import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from celery import Celery, Task
from celery.exceptions import Reject
from flask import Flask, g, has_request_context
from kombu.entity import Exchange, Queue
from sqlalchemy import Connection, Engine
from sqlalchemy.exc import OperationalError

from ..config import apply_settings, data_dir
from ..problems import Problem
from .relay import Relay
from .store import Job, JobStore, OutboxEntry

__all__ = [
    "DEFAULTS",
    "JobCancelled",
    "JobContext",
    "JobFailed",
    "JobLost",
    "Jobs",
    "get_jobs",
]

log = logging.getLogger("lockgate.jobs")

DEFAULTS: dict[str, Any] = {
    "LOCKGATE_JOBS_BROKER_URL": None,
    "LOCKGATE_JOBS_QUEUE_PREFIX": "",
    "LOCKGATE_JOBS_MAX_DELIVERIES": 5,
    "LOCKGATE_JOBS_TIME_LIMIT": 600,
    "LOCKGATE_JOBS_LEASE": 30.0,
    "LOCKGATE_JOBS_RETRY_BACKOFF": 2.0,
    "LOCKGATE_JOBS_RELAY_INTERVAL": 1.0,
    "LOCKGATE_JOBS_REPUBLISH_AFTER": 300.0,
    "LOCKGATE_JOBS_RESULTS_DIR": None,
    "LOCKGATE_JOBS_RELAY": True,
}

H = TypeVar("H", bound=Callable[..., Any])
#: RabbitMQ's own redelivery limit on the job queues (see :func:`job_queues`).
BROKER_DELIVERY_LIMIT = 20
#: A job's code: given its context, returns its ``result`` (or ``None``).
Handler = Callable[["JobContext"], "Mapping[str, Any] | None"]


class JobCancelled(Exception):
    """Raised by :meth:`JobContext.check` when the job was cancelled."""


class JobLost(Exception):
    """Raised when this delivery no longer holds the job (its lease lapsed and
    another took it over): stop, and commit nothing."""


class JobFailed(Exception):
    """A failure that another try will not mend: the job is ``failed`` at once
    with this ``code`` and ``detail`` (a retry is for what may pass)."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


@dataclass(frozen=True, slots=True)
class JobType:
    name: str
    handler: Handler
    scope: str | None
    #: Whether its client may cancel it (``DELETE``); not a job the service's
    #: own consistency needs, such as an order's confirmation.
    cancellable: bool = True


class JobContext:
    """What a running job's code gets: its job, and the means to report
    progress, notice cancellation and finish with its own effect."""

    def __init__(self, jobs: Jobs, job: Job, token: str) -> None:
        self.jobs = jobs
        self.job = job
        self.token = token
        self.completed = False
        self.cancelled = threading.Event()
        self.lost = threading.Event()
        self._written = 0.0

    @property
    def params(self) -> Mapping[str, Any]:
        return self.job.params

    @property
    def results_dir(self) -> Path:
        """Where a job writes the files its result links (created on use)."""
        return self.jobs.results_dir

    def check(self) -> None:
        """Between chunks: stop here if the job was cancelled or taken over."""
        if self.lost.is_set():
            raise JobLost(self.job.id)
        if self.cancelled.is_set():
            raise JobCancelled(self.job.id)

    def progress(self, fraction: float) -> None:
        """Report progress (written at most twice a second), then :meth:`check`."""
        now = time.monotonic()
        if now - self._written >= 0.5 or fraction >= 1:
            self._written = now
            self.jobs.store.set_progress(self.job.id, self.token, fraction)
            state = self.jobs.store.renew(self.job.id, self.token, self.jobs.lease)
            if state == "cancel":
                self.cancelled.set()
            elif state == "lost":
                self.lost.set()
        self.check()

    def complete(self, result: Mapping[str, Any] | None, connection: Connection) -> None:
        """Finish the job inside the caller's transaction, with its effect:
        both commit, or (``JobLost``: another holds the job) neither."""
        if not self.jobs.store.succeed(self.job.id, self.token, result, connection):
            raise JobLost(self.job.id)
        self.completed = True


class _Heartbeat(threading.Thread):
    """Renews a running job's lease every third of it, while its code runs."""

    def __init__(self, context: JobContext) -> None:
        super().__init__(name=f"lockgate-lease-{context.job.id}", daemon=True)
        self.context = context
        self.done = threading.Event()

    def run(self) -> None:
        jobs, job = self.context.jobs, self.context.job
        while not self.done.wait(jobs.lease / 3):
            try:
                state = jobs.store.renew(job.id, self.context.token, jobs.lease)
            except Exception:  # the database blinked: the next beat tries again
                log.warning("cannot renew the lease of job %s", job.id, exc_info=True)
                continue
            if state == "cancel":
                self.context.cancelled.set()
            elif state == "lost":
                self.context.lost.set()
                return


def celery_config(config: Mapping[str, Any], queues: list[Queue]) -> dict[str, Any]:
    """Celery's settings for a broker URL and queues, from a settled config."""
    broker = broker_url(config)
    limit = float(config["LOCKGATE_JOBS_TIME_LIMIT"])
    settings: dict[str, Any] = {
        "broker_url": broker,
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "task_acks_on_failure_or_timeout": True,
        "worker_prefetch_multiplier": 1,
        "task_time_limit": limit,
        "task_soft_time_limit": limit * 0.9,
        "task_ignore_result": True,
        "task_queues": queues,
        "task_default_queue": queues[0].name if queues else "celery",
        "task_create_missing_queues": False,
        "broker_connection_retry_on_startup": True,
        "broker_connection_timeout": 3,
        # Redelivered anyway: a task that outlives a lost connection finishes,
        # and its second delivery finds the job done.
        "worker_cancel_long_running_tasks_on_connection_loss": False,
        "worker_hijack_root_logger": False,
        "worker_send_task_events": False,
        "task_send_sent_event": False,
    }
    if broker.startswith(("redis://", "rediss://")):
        # Longer than the longest task, so a running job's message is not handed
        # to a second worker; swept for every few seconds, so a dead one's is.
        settings["broker_transport_options"] = {
            "visibility_timeout": int(limit) + 60,
            "unacked_restore_interval": 5,
            "unacked_restore_throttle": 1,
        }
    elif broker.startswith(("amqp://", "pyamqp://", "amqps://")):
        settings["broker_transport_options"] = {"confirm_publish": True}
    elif broker.startswith("sqla+sqlite"):
        # Passed to create_engine: processes sharing the file wait for its lock.
        settings["broker_transport_options"] = {"connect_args": {"timeout": 30}}
    for key, value in config.items():
        if key.startswith("CELERY_") and key != "CELERY_BROKER_URL":
            settings[key[len("CELERY_") :].lower()] = value
    return settings


def broker_url(config: Mapping[str, Any]) -> str:
    """``LOCKGATE_JOBS_BROKER_URL``, ``CELERY_BROKER_URL``, else the embedded broker."""
    found = config.get("LOCKGATE_JOBS_BROKER_URL") or config.get("CELERY_BROKER_URL")
    if found:
        return str(found)
    return f"sqla+sqlite:///{data_dir() / 'jobs-broker.db'}"


def job_queues(config: Mapping[str, Any], name: str) -> tuple[Queue, Queue]:
    """A service's queue and its dead-letter queue. On RabbitMQ both are quorum
    queues, and the broker dead-letters a message redelivered too often."""
    prefix = str(config["LOCKGATE_JOBS_QUEUE_PREFIX"])
    queue = f"{prefix}{name}"
    dead = f"{queue}.dead"
    dlx = Exchange(f"{prefix}lockgate.dead", type="direct", durable=True)
    if broker_url(config).startswith(("amqp://", "pyamqp://", "amqps://")):
        arguments = {
            "x-queue-type": "quorum",
            "x-dead-letter-exchange": dlx.name,
            "x-dead-letter-routing-key": dead,
            # A fuse behind the database's own count (which fails the job and
            # dead-letters it after LOCKGATE_JOBS_MAX_DELIVERIES): fixed, since a
            # quorum queue's arguments can never change once it is declared.
            "x-delivery-limit": BROKER_DELIVERY_LIMIT,
        }
        return (
            Queue(queue, Exchange(queue, type="direct"), routing_key=queue,
                  queue_arguments=arguments),
            Queue(dead, dlx, routing_key=dead, queue_arguments={"x-queue-type": "quorum"}),
        )  # fmt: skip
    return Queue(queue, Exchange(queue, type="direct"), routing_key=queue), Queue(
        dead, dlx, routing_key=dead
    )


def make_celery(name: str, config: Mapping[str, Any], queues: list[Queue]) -> Celery:
    celery = Celery(name)
    celery.conf.update(celery_config(config, queues))
    return celery


class Jobs:
    """Background jobs of one service: accept, run, report, cancel."""

    def __init__(self, app: Flask | None = None, *, engine: Engine | None = None) -> None:
        self.types: dict[str, JobType] = {}
        self._relay_pid = 0
        if app is not None:
            if engine is None:
                raise TypeError("Jobs(app, engine=...): the service's database engine")
            self.init_app(app, engine=engine)

    def init_app(self, app: Flask, *, engine: Engine) -> None:
        if "lockgate.jobs" in app.extensions:
            raise RuntimeError("lockgate.jobs.Jobs is already registered on this app")
        apply_settings(app, DEFAULTS, extra=("CELERY_BROKER_URL",))
        self.app = app
        config = app.config
        self.service = str(config.get("LOCKGATE_SERVICE") or app.name)
        self.store = JobStore(engine, self.service)
        self.max_deliveries = int(config["LOCKGATE_JOBS_MAX_DELIVERIES"])
        self.lease = float(config["LOCKGATE_JOBS_LEASE"])
        self.backoff = float(config["LOCKGATE_JOBS_RETRY_BACKOFF"])
        chosen = config["LOCKGATE_JOBS_RESULTS_DIR"]
        self._results_dir = Path(chosen) if chosen else None
        self.queue, self.dead_queue = job_queues(config, self.service)
        self.task_name = f"lockgate.jobs.{self.service}"
        self.celery = _celery_init_app(app, [self.queue])
        self.register(self.celery)
        self.relay = Relay(
            self.store,
            self._publish,
            interval=float(config["LOCKGATE_JOBS_RELAY_INTERVAL"]),
            republish_after=float(config["LOCKGATE_JOBS_REPUBLISH_AFTER"]),
        )
        app.extensions["lockgate.jobs"] = self
        from .metrics import watch

        watch(self.store)
        run_relay = _enabled(config["LOCKGATE_JOBS_RELAY"])

        @app.before_request
        def start_relay() -> None:
            # In the serving process (each forked one its own), not at import
            # or in a CLI command.
            if run_relay and self._relay_pid != os.getpid():
                self.start_relay()

        @app.after_request
        def wake_relay(response: Any) -> Any:
            if g.get("lockgate_jobs_accepted"):
                self.relay.wake()
            return response

    @property
    def results_dir(self) -> Path:
        folder = self._results_dir or data_dir() / "job-results" / self.service
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def start_relay(self) -> None:
        self._relay_pid = os.getpid()
        self.relay.start()

    # -- declaring and accepting --------------------------------------------

    def job(
        self, name: str, *, scope: str | None = None, cancellable: bool = True
    ) -> Callable[[H], H]:
        """Declare a job type: ``@jobs.job("users.export", scope="users:read")``.

        ``scope`` is what seeing the job and its result needs, besides being
        the client that started it (or holding ``ops:read``).
        """

        def decorate(handler: H) -> H:
            self.types[name] = JobType(name, handler, scope, cancellable)
            return handler

        return decorate

    def accept(
        self,
        name: str,
        params: Mapping[str, Any],
        *,
        connection: Connection | None = None,
        owner: str | None = None,
    ) -> Job:
        """Accept a job: its row and outbox entry, in ``connection``'s
        transaction when given (with the caller's own change), else in one of
        its own. In a request, the owner is the request's client and the
        request and trace ids go with the job into the worker's logs; the
        relay publishes it once the request's answer is ready."""
        kind = self.types.get(name)
        if kind is None:
            raise KeyError(f"no job type {name!r} (declare it with @jobs.job)")
        request_id = trace_id = None
        if has_request_context():
            from ..auth import current_client
            from ..runtime import request_id as current_request_id
            from ..runtime import trace_id as current_trace_id

            client = current_client()
            owner = owner or (client.client_id if client is not None else None)
            request_id, trace_id = current_request_id(), current_trace_id()
            g.lockgate_jobs_accepted = True
        values: dict[str, Any] = {
            "type": name,
            "queue": self.queue.name,
            "params": params,
            "max_attempts": self.max_deliveries,
            "owner": owner,
            "scope": kind.scope,
            "request_id": request_id,
            "trace_id": trace_id,
        }
        if connection is not None:
            return self.store.accept(connection, **values)
        try:
            with self.store.transaction() as own:
                job = self.store.accept(own, **values)
        except OperationalError:
            if not has_request_context():
                raise
            # Not accepted, so not promised: the client may try again.
            raise Problem(
                503,
                "jobs cannot be accepted now: the service's database is unavailable",
                code="JobsUnavailable",
                headers={"Retry-After": "5"},
            ) from None
        if not has_request_context():
            self.relay.wake()
        return job

    def _publish(self, entry: OutboxEntry) -> None:
        self.celery.send_task(self.task_name, args=[entry.job_id], queue=entry.queue, retry=False)

    # -- running -------------------------------------------------------------

    def register(self, celery: Celery) -> Task:
        """Put this service's task on ``celery`` (the worker's app serves several
        services: each task runs in its own service's app context)."""
        jobs = self

        # Not shared: each Celery app (the service's, the worker's) has its own.
        @celery.task(
            name=self.task_name,
            bind=True,
            shared=False,
            acks_late=True,
            reject_on_worker_lost=True,
        )
        def run(task: Task, job_id: str) -> None:
            delivery = task.request.delivery_info or {}
            with jobs.app.app_context():
                delivery = task.request.delivery_info or {}
                try:
                    jobs.execute(job_id, redelivered=bool(delivery.get("redelivered")))
                except OperationalError:
                    # The database is away: the message goes back (after a
                    # pause, not in a tight loop), the job is still to run.
                    log.warning("job %s: database unavailable, message requeued", job_id)
                    time.sleep(1.0)
                    raise Reject("database unavailable", requeue=True) from None

        return run

    def execute(self, job_id: str, *, redelivered: bool = False) -> None:
        """Run one delivery of a job: claim it, run its code under a renewed
        lease, finish it. A delivery that finds the job finished, held by a
        live worker or early does nothing; one past the deliveries allowed
        fails it and rejects the message (the dead-letter queue)."""
        import structlog

        claim = self.store.claim(job_id, self.lease)
        job = claim.job
        if claim.state == "exhausted":
            log.warning("job %s failed: too many deliveries", job_id)
            raise Reject("too many deliveries", requeue=False)
        if claim.state != "claimed" or job is None or claim.token is None:
            log.info("job %s not run: %s%s", job_id, claim.state, " (redelivered)" * redelivered)
            return
        context = JobContext(self, job, claim.token)
        heartbeat = _Heartbeat(context)
        with structlog.contextvars.bound_contextvars(
            job_id=job.id,
            job_type=job.type,
            request_id=job.request_id,
            trace_id=job.trace_id,
            service=self.service,
            attempt=job.attempts,
        ):
            event = structlog.get_logger("lockgate.jobs")
            event.info("job started")
            heartbeat.start()
            try:
                self._run(context, event)
            finally:
                heartbeat.done.set()

    def _run(self, context: JobContext, event: Any) -> None:
        job, token = context.job, context.token
        kind = self.types.get(job.type)
        try:
            if kind is None:
                raise JobFailed("UnknownJobType", f"this worker knows no job type {job.type!r}")
            result = kind.handler(context)
            if not context.completed and not self.store.succeed(job.id, token, result):
                raise JobLost(job.id)
        except JobLost:
            event.warning("job lost: another delivery holds it")
            return
        except JobCancelled:
            self.store.cancelled(job.id, token)
            event.info("job cancelled")
            return
        except JobFailed as error:
            self.store.fail(job.id, token, {"code": error.code, "detail": error.detail},
                            retry_in=None)  # fmt: skip
            event.warning("job failed", code=error.code, detail=error.detail)
            return
        except Exception as error:
            detail = f"{type(error).__name__}: {error}"[:500]
            wait = min(300.0, self.backoff * 2 ** (job.attempts - 1)) * random.uniform(0.5, 1.0)
            outcome = self.store.fail(
                job.id, token, {"code": "JobError", "detail": detail}, retry_in=wait
            )
            if outcome == "failed":
                event.error("job failed", detail=detail, attempts=job.attempts)
                raise Reject(detail, requeue=False) from None
            event.warning("job will be retried", detail=detail, retry_in=round(wait, 2))
            return
        event.info("job succeeded")


def _enabled(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1", "yes", "on")
    return bool(value)


def _celery_init_app(app: Flask, queues: list[Queue]) -> Celery:
    """Flask's ``celery_init_app``: the Celery app from the Flask config, its
    tasks run in the app context."""

    class FlaskTask(Task):  # type: ignore[misc]
        def __call__(self, *args: object, **kwargs: object) -> object:
            with app.app_context():
                return self.run(*args, **kwargs)

    celery = Celery(app.name, task_cls=FlaskTask)
    celery.conf.update(celery_config(app.config, queues))
    app.extensions["celery"] = celery
    return celery


def get_jobs(app: Flask) -> Jobs:
    found: Jobs = app.extensions["lockgate.jobs"]
    return found
