"""The job rows and the outbox, in the service's own database.

The database, not the broker, is the truth about a job. Accepting one writes
its row and an outbox entry in one transaction (the caller's own, when the
job goes with a change of its own: an order and its confirmation); a relay
(:mod:`.relay`) publishes the entry and deletes it only once the broker has
taken the message. A broker message carries nothing but the job id, so a
message delivered twice, late, or after the job finished changes nothing:
the worker *claims* the job with a conditional update (a lease it renews
while it runs), and only the lease's holder may finish it.

Each service has its own two tables, named after it (``users_jobs``,
``users_job_outbox``), so services sharing one database (one
``DATABASE_URL``) keep their jobs apart; :func:`create_job_tables` is what a
service's Alembic revision calls.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from sqlalchemy import (
    Boolean,
    Column,
    Connection,
    DateTime,
    Engine,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    and_,
    delete,
    func,
    insert,
    or_,
    select,
    update,
)

__all__ = [
    "FINISHED",
    "STATUSES",
    "Claim",
    "Job",
    "JobStore",
    "OutboxEntry",
    "create_job_tables",
    "drop_job_tables",
    "job_tables",
]

STATUSES = ("queued", "running", "succeeded", "failed", "cancelled")
#: A job in one of these will never run again (but ``lockgate jobs retry``).
FINISHED = frozenset({"succeeded", "failed", "cancelled"})


def _columns() -> tuple[list[Any], list[Any], list[Any]]:
    jobs = [
        Column("id", String(64), primary_key=True),
        Column("type", String(64), nullable=False),
        Column("queue", String(128), nullable=False),
        Column("status", String(16), nullable=False),
        # Who may see it: the client that created it (and ops:read).
        Column("owner", String(200), nullable=True),
        # The scope the job's resource needs (users:read for an export).
        Column("scope", String(100), nullable=True),
        Column("params", Text, nullable=False),
        Column("progress", Float, nullable=False, default=0.0),
        Column("result", Text, nullable=True),
        Column("error", Text, nullable=True),
        # Deliveries claimed so far, and how many make it failed.
        Column("attempts", Integer, nullable=False, default=0),
        Column("max_attempts", Integer, nullable=False),
        Column("lease_token", String(32), nullable=True),
        Column("lease_until", DateTime(timezone=True), nullable=True),
        Column("cancel_requested", Boolean, nullable=False, default=False),
        # Not to be claimed before (a retry's backoff).
        Column("not_before", DateTime(timezone=True), nullable=True),
        Column("published_at", DateTime(timezone=True), nullable=True),
        Column("request_id", String(128), nullable=True),
        Column("trace_id", String(32), nullable=True),
        Column("created_at", DateTime(timezone=True), nullable=False),
        Column("started_at", DateTime(timezone=True), nullable=True),
        Column("finished_at", DateTime(timezone=True), nullable=True),
        Column("duration_seconds", Float, nullable=True),
    ]
    # One row per finish, never updated: what jobs_total counts.
    outcomes = [
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("job_id", String(64), nullable=False),
        Column("type", String(64), nullable=False),
        Column("outcome", String(16), nullable=False),
        Column("duration_seconds", Float, nullable=True),
        Column("at", DateTime(timezone=True), nullable=False),
    ]
    outbox = [
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("job_id", String(64), nullable=False),
        Column("queue", String(128), nullable=False),
        Column("available_at", DateTime(timezone=True), nullable=False),
        # A relay publishing it holds it until then (several relays may run).
        Column("locked_until", DateTime(timezone=True), nullable=True),
        Column("attempts", Integer, nullable=False, default=0),
        Column("last_error", String(500), nullable=True),
    ]
    return jobs, outbox, outcomes


def job_tables(metadata: MetaData, prefix: str) -> tuple[Table, Table, Table]:
    """The jobs table, the outbox and the outcomes of the service ``prefix``."""
    names = (f"{prefix}_jobs", f"{prefix}_job_outbox", f"{prefix}_job_outcomes")
    if names[0] in metadata.tables:
        found = metadata.tables
        return found[names[0]], found[names[1]], found[names[2]]
    jobs_columns, outbox_columns, outcome_columns = _columns()
    jobs = Table(
        names[0],
        metadata,
        *jobs_columns,
        Index(f"ix_{names[0]}_status_queue", "status", "queue"),
    )
    outbox = Table(
        names[1],
        metadata,
        *outbox_columns,
        Index(f"ix_{names[1]}_available_at", "available_at"),
    )
    outcomes = Table(names[2], metadata, *outcome_columns)
    return jobs, outbox, outcomes


def create_job_tables(op: Any, prefix: str) -> None:
    """For a service's Alembic ``upgrade()``: ``create_job_tables(op, "users")``."""
    jobs_columns, outbox_columns, outcome_columns = _columns()
    op.create_table(f"{prefix}_jobs", *jobs_columns)
    op.create_index(f"ix_{prefix}_jobs_status_queue", f"{prefix}_jobs", ["status", "queue"])
    op.create_table(f"{prefix}_job_outbox", *outbox_columns)
    op.create_index(
        f"ix_{prefix}_job_outbox_available_at", f"{prefix}_job_outbox", ["available_at"]
    )
    op.create_table(f"{prefix}_job_outcomes", *outcome_columns)


def drop_job_tables(op: Any, prefix: str) -> None:
    """For a service's Alembic ``downgrade()``."""
    op.drop_table(f"{prefix}_job_outcomes")
    op.drop_table(f"{prefix}_job_outbox")
    op.drop_table(f"{prefix}_jobs")


def _now() -> datetime:
    return datetime.now(UTC)


def _aware(value: datetime | None) -> datetime | None:
    """SQLite gives naive datetimes back; every stored one is UTC."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Job:
    """One job as stored."""

    id: str
    type: str
    queue: str
    status: str
    owner: str | None
    scope: str | None
    params: Mapping[str, Any]
    progress: float
    result: Mapping[str, Any] | None
    error: Mapping[str, Any] | None
    attempts: int
    max_attempts: int
    cancel_requested: bool
    request_id: str | None
    trace_id: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None

    @property
    def finished(self) -> bool:
        return self.status in FINISHED


@dataclass(frozen=True, slots=True)
class OutboxEntry:
    id: int
    job_id: str
    queue: str
    attempts: int


@dataclass(frozen=True, slots=True)
class Claim:
    """What a delivery found: ``claimed`` (run it, holding ``token``), or why not."""

    state: Literal["claimed", "finished", "busy", "early", "missing", "exhausted"]
    job: Job | None
    token: str | None = None


def _load(text: str | None) -> Any:
    return None if text is None else json.loads(text)


class JobStore:
    """Accept, claim, renew, finish and look up the jobs of one service."""

    def __init__(self, engine: Engine, service: str, *, metadata: MetaData | None = None) -> None:
        self.engine = engine
        self.service = service
        self.jobs, self.outbox, self.outcomes = job_tables(metadata or MetaData(), service)

    # -- accepting -------------------------------------------------------

    def new_id(self) -> str:
        """``<service>-<32 hex>``: the fleet routes ``/jobs/<id>`` by its prefix."""
        return f"{self.service}-{uuid.uuid4().hex}"

    def accept(
        self,
        connection: Connection,
        *,
        type: str,
        queue: str,
        params: Mapping[str, Any],
        max_attempts: int,
        owner: str | None = None,
        scope: str | None = None,
        request_id: str | None = None,
        trace_id: str | None = None,
    ) -> Job:
        """Write a queued job and its outbox entry in ``connection``'s transaction."""
        now = _now()
        job_id = self.new_id()
        text = json.dumps(dict(params), separators=(",", ":"))
        connection.execute(
            insert(self.jobs).values(
                id=job_id,
                type=type,
                queue=queue,
                status="queued",
                owner=owner,
                scope=scope,
                params=text,
                progress=0.0,
                attempts=0,
                max_attempts=max_attempts,
                cancel_requested=False,
                request_id=request_id,
                trace_id=trace_id,
                created_at=now,
            )
        )
        connection.execute(
            insert(self.outbox).values(job_id=job_id, queue=queue, available_at=now, attempts=0)
        )
        return Job(
            job_id, type, queue, "queued", owner, scope, dict(params), 0.0, None, None, 0,
            max_attempts, False, request_id, trace_id, now, None, None,
        )  # fmt: skip

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        with self.engine.begin() as connection:
            yield connection

    # -- reading ---------------------------------------------------------

    def get(self, job_id: str, connection: Connection | None = None) -> Job | None:
        query = select(self.jobs).where(self.jobs.c.id == job_id)
        if connection is not None:
            row = connection.execute(query).first()
        else:
            with self.engine.connect() as own:
                row = own.execute(query).first()
        return None if row is None else self._job(row)

    def recent(self, *, status: str | None = None, limit: int = 50) -> list[Job]:
        """The newest jobs first."""
        query = select(self.jobs).order_by(self.jobs.c.created_at.desc()).limit(limit)
        if status is not None:
            query = query.where(self.jobs.c.status == status)
        with self.engine.connect() as connection:
            return [self._job(row) for row in connection.execute(query)]

    def _job(self, row: Any) -> Job:
        return Job(
            id=row.id,
            type=row.type,
            queue=row.queue,
            status=row.status,
            owner=row.owner,
            scope=row.scope,
            params=_load(row.params) or {},
            progress=float(row.progress or 0.0),
            result=_load(row.result),
            error=_load(row.error),
            attempts=row.attempts,
            max_attempts=row.max_attempts,
            cancel_requested=bool(row.cancel_requested),
            request_id=row.request_id,
            trace_id=row.trace_id,
            created_at=_aware(row.created_at) or _now(),
            started_at=_aware(row.started_at),
            finished_at=_aware(row.finished_at),
        )

    # -- the worker's side -------------------------------------------------

    def claim(self, job_id: str, lease: float) -> Claim:
        """Take the job for one delivery, or say why it is not to run now.

        Claimable: queued (and past its backoff), or running under a lease
        that has expired (its worker died). Every claim counts a delivery;
        the one past ``max_attempts`` fails the job instead.
        """
        now = _now()
        token = uuid.uuid4().hex
        j = self.jobs.c
        claimable = and_(
            j.id == job_id,
            j.cancel_requested.is_(False),
            j.attempts < j.max_attempts,
            or_(j.not_before.is_(None), j.not_before <= now),
            or_(j.status == "queued", and_(j.status == "running", j.lease_until < now)),
        )
        with self.engine.begin() as connection:
            done = connection.execute(
                update(self.jobs)
                .where(claimable)
                .values(
                    status="running",
                    attempts=j.attempts + 1,
                    lease_token=token,
                    lease_until=now + timedelta(seconds=lease),
                    started_at=func.coalesce(j.started_at, now),
                    not_before=None,
                )
            )
            job = self.get(job_id, connection)
            if done.rowcount == 1:
                return Claim("claimed", job, token)
            if job is None:
                return Claim("missing", None)
            if job.finished:
                return Claim("finished", job)
            if job.cancel_requested and (
                job.status == "queued" or self._lease_over(connection, job_id, now)
            ):
                # Asked to stop, and its holder has gone: it ends here, cancelled.
                self._cancelled(connection, job_id, now)
                return Claim("finished", self.get(job_id, connection))
            if job.attempts >= job.max_attempts and (
                job.status == "queued" or self._lease_over(connection, job_id, now)
            ):
                error = {
                    "code": "TooManyDeliveries",
                    "detail": f"delivered {job.attempts} times without finishing",
                }
                self._finish(connection, job_id, None, "failed", error=error, now=now)
                return Claim("exhausted", self.get(job_id, connection))
            if job.status == "queued":
                return Claim("early", job)  # a duplicate before its backoff ends
            return Claim("busy", job)

    def _lease_over(self, connection: Connection, job_id: str, now: datetime) -> bool:
        until = connection.execute(
            select(self.jobs.c.lease_until).where(self.jobs.c.id == job_id)
        ).scalar()
        until = _aware(until)
        return until is None or until < now

    def renew(self, job_id: str, token: str, lease: float) -> Literal["ok", "cancel", "lost"]:
        """Extend the lease; ``cancel`` when cancellation was asked, ``lost``
        when the job is no longer this holder's."""
        now = _now()
        j = self.jobs.c
        with self.engine.begin() as connection:
            done = connection.execute(
                update(self.jobs)
                .where(j.id == job_id, j.lease_token == token, j.status == "running")
                .values(lease_until=now + timedelta(seconds=lease))
            )
            if done.rowcount != 1:
                return "lost"
            asked = connection.execute(select(j.cancel_requested).where(j.id == job_id)).scalar()
        return "cancel" if asked else "ok"

    def set_progress(self, job_id: str, token: str, progress: float) -> None:
        j = self.jobs.c
        with self.engine.begin() as connection:
            connection.execute(
                update(self.jobs)
                .where(j.id == job_id, j.lease_token == token, j.status == "running")
                .values(progress=min(1.0, max(0.0, progress)))
            )

    def succeed(
        self,
        job_id: str,
        token: str,
        result: Mapping[str, Any] | None,
        connection: Connection | None = None,
    ) -> bool:
        """Finish the job as its lease holder; ``False`` if it was not (any more).

        Give ``connection`` to commit the job's own effect in the same
        transaction: the effect happens exactly when the job succeeds.
        """
        if connection is not None:
            return self._finish(connection, job_id, token, "succeeded", result=result)
        with self.engine.begin() as own:
            return self._finish(own, job_id, token, "succeeded", result=result)

    def fail(
        self,
        job_id: str,
        token: str,
        error: Mapping[str, Any],
        *,
        retry_in: float | None,
    ) -> Literal["retrying", "failed", "lost"]:
        """A delivery failed: queue the job again after ``retry_in`` seconds
        (through the outbox) while deliveries are left, else fail it."""
        now = _now()
        j = self.jobs.c
        with self.engine.begin() as connection:
            job = self.get(job_id, connection)
            if job is None or job.status != "running":
                return "lost"
            if retry_in is not None and job.attempts < job.max_attempts:
                due = now + timedelta(seconds=retry_in)
                done = connection.execute(
                    update(self.jobs)
                    .where(j.id == job_id, j.lease_token == token, j.status == "running")
                    .values(
                        status="queued",
                        lease_token=None,
                        lease_until=None,
                        not_before=due,
                        error=json.dumps(dict(error)),
                    )
                )
                if done.rowcount != 1:
                    return "lost"
                connection.execute(
                    insert(self.outbox).values(
                        job_id=job_id, queue=job.queue, available_at=due, attempts=0
                    )
                )
                return "retrying"
            finished = self._finish(connection, job_id, token, "failed", error=error, now=now)
            return "failed" if finished else "lost"

    def cancelled(self, job_id: str, token: str) -> bool:
        """The holder stopped the job because cancellation was asked."""
        with self.engine.begin() as connection:
            return self._finish(connection, job_id, token, "cancelled")

    def _finish(
        self,
        connection: Connection,
        job_id: str,
        token: str | None,
        status: str,
        *,
        result: Mapping[str, Any] | None = None,
        error: Mapping[str, Any] | None = None,
        now: datetime | None = None,
        unheld: tuple[str, ...] = ("queued", "running"),
    ) -> bool:
        """Finish as the lease holder (``token``), or, without one, a job no
        live lease holds (queued, or running under a lapsed lease)."""
        now = now or _now()
        j = self.jobs.c
        where: list[Any] = [j.id == job_id]
        if token is not None:
            where += [j.status == "running", j.lease_token == token]
        else:
            free: list[Any] = [j.status == "queued"] if "queued" in unheld else []
            if "running" in unheld:
                free.append(and_(j.status == "running", j.lease_until < now))
            where.append(or_(*free))
        started = connection.execute(select(j.started_at).where(j.id == job_id)).scalar()
        started = _aware(started)
        values: dict[str, Any] = {
            "status": status,
            "finished_at": now,
            "lease_token": None,
            "lease_until": None,
            "duration_seconds": None if started is None else (now - started).total_seconds(),
        }
        if status == "succeeded":
            values["progress"] = 1.0
            values["result"] = None if result is None else json.dumps(dict(result))
            values["error"] = None
        if error is not None:
            values["error"] = json.dumps(dict(error))
        done = connection.execute(update(self.jobs).where(*where).values(**values))
        if done.rowcount != 1:
            return False
        kind = connection.execute(select(j.type).where(j.id == job_id)).scalar()
        connection.execute(
            insert(self.outcomes).values(
                job_id=job_id,
                type=kind,
                outcome=status,
                duration_seconds=values["duration_seconds"],
                at=now,
            )
        )
        return True

    def _cancelled(
        self, connection: Connection, job_id: str, now: datetime, *, only_queued: bool = False
    ) -> bool:
        """Cancel a job no delivery holds: queued, or (``only_queued`` false)
        running under a lapsed lease."""
        error = {"code": "Cancelled", "detail": "cancelled before it ran"}
        unheld = ("queued",) if only_queued else ("queued", "running")
        return self._finish(
            connection, job_id, None, "cancelled", error=error, now=now, unheld=unheld
        )

    # -- the API's side ----------------------------------------------------

    def cancel(self, job_id: str) -> Job | None:
        """Cancel a queued job now; ask a running one to stop (it checks
        between chunks). A finished job is left as it is."""
        now = _now()
        j = self.jobs.c
        with self.engine.begin() as connection:
            job = self.get(job_id, connection)
            if job is None or job.finished:
                return job
            # Queued: cancelled now, unless a worker claimed it meanwhile (the
            # update says so in its WHERE); then, as for any running job, the
            # holder is asked to stop and finishes it as cancelled itself.
            if not self._cancelled(connection, job_id, now, only_queued=True):
                connection.execute(
                    update(self.jobs)
                    .where(j.id == job_id, j.status == "running")
                    .values(cancel_requested=True)
                )
            return self.get(job_id, connection)

    def retry(self, job_id: str) -> Job | None:
        """Queue a failed or cancelled job again, its deliveries counted anew."""
        now = _now()
        j = self.jobs.c
        with self.engine.begin() as connection:
            job = self.get(job_id, connection)
            if job is None or job.status not in ("failed", "cancelled"):
                return job
            connection.execute(
                update(self.jobs)
                .where(j.id == job_id)
                .values(
                    status="queued",
                    attempts=0,
                    error=None,
                    result=None,
                    progress=0.0,
                    cancel_requested=False,
                    not_before=None,
                    started_at=None,
                    finished_at=None,
                    duration_seconds=None,
                )
            )
            connection.execute(
                insert(self.outbox).values(
                    job_id=job_id, queue=job.queue, available_at=now, attempts=0
                )
            )
            return self.get(job_id, connection)

    # -- the relay's side --------------------------------------------------

    def due(self, *, limit: int = 100, hold: float = 30.0) -> list[OutboxEntry]:
        """Outbox entries ready to publish, each held for ``hold`` seconds by
        this caller (another relay skips them meanwhile)."""
        now = _now()
        o = self.outbox.c
        ready = and_(o.available_at <= now, or_(o.locked_until.is_(None), o.locked_until < now))
        taken = []
        with self.engine.begin() as connection:
            rows = connection.execute(
                select(o.id, o.job_id, o.queue, o.attempts)
                .where(ready)
                .order_by(o.available_at, o.id)
                .limit(limit)
            ).all()
            for row in rows:
                held = connection.execute(
                    update(self.outbox)
                    .where(o.id == row.id, ready)
                    .values(locked_until=now + timedelta(seconds=hold))
                )
                if held.rowcount == 1:
                    taken.append(OutboxEntry(row.id, row.job_id, row.queue, row.attempts))
        return taken

    def published(self, entry: OutboxEntry) -> None:
        """The broker has the message: the entry goes."""
        with self.engine.begin() as connection:
            connection.execute(delete(self.outbox).where(self.outbox.c.id == entry.id))
            connection.execute(
                update(self.jobs).where(self.jobs.c.id == entry.job_id).values(published_at=_now())
            )

    def unpublished(self, entry: OutboxEntry, error: str, retry_in: float) -> None:
        """Publishing failed (the broker is down): try again after ``retry_in``."""
        o = self.outbox.c
        with self.engine.begin() as connection:
            connection.execute(
                update(self.outbox)
                .where(o.id == entry.id)
                .values(
                    attempts=o.attempts + 1,
                    last_error=error[:500],
                    locked_until=None,
                    available_at=_now() + timedelta(seconds=retry_in),
                )
            )

    def reap(self, *, republish_after: float) -> int:
        """Publish again what no worker will otherwise run: jobs running under
        an expired lease (their worker died) and queued jobs published
        ``republish_after`` seconds ago but never claimed (a transport that
        lost the message). Returns how many were put in the outbox."""
        now = _now()
        j, o = self.jobs.c, self.outbox.c
        waiting = select(o.job_id).where(o.job_id == j.id).exists()
        stale = or_(
            and_(j.status == "running", j.lease_until < now),
            and_(
                j.status == "queued",
                j.published_at < now - timedelta(seconds=republish_after),
                or_(j.not_before.is_(None), j.not_before <= now),
            ),
        )
        with self.engine.begin() as connection:
            rows = connection.execute(select(j.id, j.queue).where(stale, ~waiting).limit(500)).all()
            for row in rows:
                connection.execute(
                    insert(self.outbox).values(
                        job_id=row.id, queue=row.queue, available_at=now, attempts=0
                    )
                )
                # Counted from now: the next republish waits a full period.
                connection.execute(update(self.jobs).where(j.id == row.id).values(published_at=now))
        return len(rows)

    def pending_outbox(self) -> int:
        with self.engine.connect() as connection:
            return int(
                connection.execute(select(func.count()).select_from(self.outbox)).scalar() or 0
            )

    # -- metrics -----------------------------------------------------------

    def outcome_counts(self) -> list[tuple[str, str, int]]:
        """(type, outcome, count) of every finish so far: outcomes are only ever
        added (a job retried and finished again counts twice), so the counts
        never go down."""
        o = self.outcomes.c
        with self.engine.connect() as connection:
            rows = connection.execute(
                select(o.type, o.outcome, func.count()).group_by(o.type, o.outcome)
            ).all()
        return [(row[0], row[1], int(row[2])) for row in rows]

    def durations(self, buckets: tuple[float, ...]) -> list[tuple[str, list[int], float, int]]:
        """Per type: cumulative counts at each bucket, the sum and the count of
        the finished jobs' run times (for a Prometheus histogram)."""
        j = self.outcomes.c  # every finish so far, as outcome_counts
        from sqlalchemy import case

        counted = [func.sum(case((j.duration_seconds <= bound, 1), else_=0)) for bound in buckets]
        with self.engine.connect() as connection:
            rows = connection.execute(
                select(j.type, func.count(), func.sum(j.duration_seconds), *counted)
                .where(j.duration_seconds.is_not(None))
                .group_by(j.type)
            ).all()
        return [
            (row[0], [int(n or 0) for n in row[3:]], float(row[2] or 0.0), int(row[1]))
            for row in rows
        ]

    def depth(self) -> list[tuple[str, str, int]]:
        """(queue, status, count) of the jobs waiting (queued) and running."""
        j = self.jobs.c
        with self.engine.connect() as connection:
            rows = connection.execute(
                select(j.queue, j.status, func.count())
                .where(j.status.in_(("queued", "running")))
                .group_by(j.queue, j.status)
            ).all()
        return [(row[0], row[1], int(row[2])) for row in rows]
