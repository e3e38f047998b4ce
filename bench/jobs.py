"""Jobs per second through the outbox, the broker and the worker, and what the outbox adds.

The issue: ``make bench`` reports jobs per second through the outbox, broker
and worker for a no-op job, and the latency the outbox adds against
publishing directly, in one run. There is no target figure: the figures are
reported as measured.

One Flask app with ``lockgate.jobs.Jobs`` (``LOCKGATE_SERVICE=bench``: the
tables ``bench_jobs``, ``bench_job_outbox`` and the rest of
``lockgate.jobs.store.job_tables``, the queue ``<prefix>bench``), its engine
from ``lockgate.fleet.database.make_engine`` (as the services make theirs),
one job type ``bench.noop`` whose code returns ``None``, and every other
setting the library's default. Once per broker and database:

- brokers: the machine's RabbitMQ (``amqp://guest:guest@127.0.0.1:5672//``,
  quorum queues, publisher confirms) and Redis (``redis://127.0.0.1:6379/12``,
  a database no test or other benchmark uses, emptied at the start and the
  end of a run only), each time on queues of a prefix of its own
  (``bench-<hex>-``, deleted at the end);
- databases: a fresh SQLite file (the fleet's default) and a fresh schema in
  the machine's PostgreSQL (``postgresql+psycopg://postgres@127.0.0.1:5432/test``,
  first on the search path, dropped at the end), as ``tests/servers.py`` makes
  one.

The worker is ``lockgate.jobs.worker.run_worker`` (Celery, prefork pool,
concurrency 2, as ``lockgate worker`` runs it, its JSON logs on), this
script started again in a process of its own (``--worker-child``) on the
same database and broker, stopped by its PID at the end; its master runs its
own relay, as in the fleet. The setups (a broker and a database) run one
after the other, each with its own worker: compare the cases within a
setup, not the setups with each other (the machine's load moves between
them).

Two cases, from the benchmark's process (the web side):

- *outbox*: ``jobs.accept("bench.noop", {})``, the library's path. The job row
  and its outbox entry are written in one transaction; the relay thread
  (``jobs.start_relay()``, woken by the accept) takes the entry, publishes
  the job id and deletes the entry once the broker has it.
- *direct*: the same rows written by the same ``store.accept`` in one
  transaction, the outbox entry deleted again in that transaction (no relay
  ever sees it), then, after the commit, the caller publishes the job id
  itself with the relay's own call (``jobs.celery.send_task(jobs.task_name,
  args=[job.id], queue=jobs.queue.name, retry=False)``). What a service
  without an outbox would do: commit, then publish, and lose the job if it
  dies between the two.

Measured, per setup, after a warm-up of every case:

- *latency*: one job in flight at a time, the cases taking turns in rounds of
  outbox, outbox, direct, direct (each case following each equally often);
  the added figure is also given for each of :data:`BLOCKS` stretches of
  the run, to show its spread on a shared machine. A job's latency runs
  from just before the accept (or the direct write) to the worker's claim
  (its ``started_at``, stamped by the worker) and to its end
  (``finished_at``); both are wall clock times of one machine. The caller
  then waits for the job to be ``succeeded`` and the outbox to be empty
  before the next one. Also the time the caller waits for the accept (or
  the write and the publish) to return. The headline: added = p50(outbox) -
  p50(direct) to the claim, and the same at p90.
- *throughput*: :data:`ROUNDS` rounds of each case (in the order outbox,
  direct, direct, outbox, ...), each round ``--jobs`` jobs accepted as
  fast as one caller thread can, then waited for. Jobs per second: the
  round's jobs over the time from just before its first accept to the last
  one's ``finished_at``; the median round is reported, and every round. A
  round ends with the slower of the caller and the worker: the caller's own
  rate (the round's jobs over the time its accepts took) is given beside it.
  The cases compared: outbox over direct jobs/s in each two rounds run back
  to back, the median pair reported (the load of a shared machine moves
  from minute to minute, so a round is compared with its neighbour).

Only 127.0.0.1 is used.

    python bench/jobs.py [--jobs 80] [--latency 100] [--brokers rabbitmq,redis]
                         [--databases sqlite,postgresql] [--write docs/benchmarks.md]
"""

from __future__ import annotations

import argparse
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

import redis
from flask import Flask
from kombu import Connection as BrokerConnection
from sqlalchemy import MetaData, create_engine, delete, func, select, text

from lockgate.fleet.database import make_engine
from lockgate.jobs import Job, JobContext, Jobs
from lockgate.jobs.store import job_tables

sys.path.insert(0, str(Path(__file__).parent))
import inprocess
from report import write_section

ROOT = Path(__file__).resolve().parent.parent
SERVICE = "bench"
JOB = "bench.noop"
BROKERS = {
    "rabbitmq": ("RabbitMQ", "amqp://guest:guest@127.0.0.1:5672//"),
    "redis": ("Redis", "redis://127.0.0.1:6379/12"),
}
POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
DATABASES = {"sqlite": "SQLite", "postgresql": "PostgreSQL"}
#: Processes of the worker's prefork pool (``lockgate worker``'s default).
CONCURRENCY = 2
#: Latency: the added figure is also given for each of this many stretches of the run.
BLOCKS = 5
#: Throughput: rounds of each case (odd: the median is a round's own figure).
ROUNDS = 5
#: Jobs of each case before measuring (one at a time, then one burst).
WARM_UP = 20
#: How often the caller looks at the job it waits for, in seconds.
POLL = 0.005


# -- the app, on both sides ----------------------------------------------------


def make_jobs(database: str, broker: str, prefix: str) -> Jobs:
    """The benchmark's app and its jobs: the same in the caller and the worker."""
    app = Flask("bench_jobs")
    app.config.update(
        LOCKGATE_SERVICE=SERVICE,
        LOCKGATE_JOBS_BROKER_URL=broker,
        LOCKGATE_JOBS_QUEUE_PREFIX=prefix,
    )
    jobs = Jobs(app, engine=make_engine(database))

    @jobs.job(JOB)
    def noop(context: JobContext) -> None:
        return None

    return jobs


def worker_child(database: str, broker: str, prefix: str) -> int:
    """The worker: ``run_worker`` on the benchmark's app, until SIGTERM."""
    from lockgate.jobs.worker import run_worker
    from lockgate.runtime.logs import configure_logging

    configure_logging()
    jobs = make_jobs(database, broker, prefix)
    run_worker([jobs.app], concurrency=CONCURRENCY, pool="prefork", name=f"bench-{os.getpid()}")
    return 0


def clean_environment() -> None:
    """None of the caller's ``LOCKGATE_*`` or Celery settings, here or in the worker."""
    for key in list(os.environ):
        if key.startswith(("LOCKGATE_", "CELERY_")):
            del os.environ[key]


@contextmanager
def fresh_database(kind: str, folder: Path) -> Iterator[str]:
    """A SQLite file, or a PostgreSQL schema first on the search path (dropped
    after), with the job tables."""
    schema = f"bench_jobs_{uuid.uuid4().hex[:12]}"
    if kind == "sqlite":
        url = f"sqlite:///{folder / 'bench.db'}"
    else:
        admin = create_engine(POSTGRES)
        with admin.begin() as connection:
            connection.execute(text(f'CREATE SCHEMA "{schema}"'))
        url = f"{POSTGRES}?options={quote(f'-csearch_path={schema}')}"
    try:
        engine = make_engine(url)
        metadata = MetaData()
        job_tables(metadata, SERVICE)
        metadata.create_all(engine)
        engine.dispose()
        yield url
    finally:
        if kind != "sqlite":
            with admin.begin() as connection:
                connection.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
            admin.dispose()


@dataclass
class Side:
    """One setup, a broker and a database: the caller's jobs, and the worker process."""

    name: str
    broker: str
    folder: Path
    jobs: Jobs
    worker: subprocess.Popen[bytes]

    @property
    def log(self) -> Path:
        return self.folder / "worker.log"


def start(name: str, broker: str, database: str, folder: Path) -> Side:
    """The worker, up once its log says ``ready.``, then the caller's relay."""
    prefix = f"bench-{uuid.uuid4().hex[:10]}-"
    env = {**os.environ, "LOCKGATE_DATA_DIR": str(folder / "data")}
    command = [sys.executable, __file__, "--worker-child", database, broker, prefix]
    with (folder / "worker.log").open("wb") as log:
        process = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=log, stderr=log, start_new_session=True
        )
    side = Side(name, broker, folder, make_jobs(database, broker, prefix), process)
    deadline = time.monotonic() + 60
    while "ready." not in side.log.read_text(errors="replace"):
        if time.monotonic() > deadline or process.poll() is not None:
            stop(side)
            raise SystemExit(f"{name}: the worker did not start; its log: {side.log}")
        time.sleep(0.1)
    side.jobs.start_relay()
    return side


def stop(side: Side) -> None:
    """The caller's relay, then SIGTERM to the worker (by its PID: a warm stop);
    SIGKILL to it and its children (its own process group) if it lingers."""
    side.jobs.relay.stop()
    process = side.worker
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        with suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
    side.jobs.store.engine.dispose()


def delete_queues(side: Side) -> None:
    """The run's queues and exchanges, on the broker."""
    queue, dead = side.jobs.queue, side.jobs.dead_queue
    with BrokerConnection(side.broker) as connection:
        for entity in (queue, dead, queue.exchange, dead.exchange):
            with suppress(Exception):
                entity.bind(connection.channel()).delete()


# -- the cases -----------------------------------------------------------------


def outbox(jobs: Jobs) -> Job:
    return jobs.accept(JOB, {})


def direct(jobs: Jobs) -> Job:
    store = jobs.store
    with store.transaction() as connection:
        job = store.accept(
            connection, type=JOB, queue=jobs.queue.name, params={},
            max_attempts=jobs.max_deliveries,
        )  # fmt: skip
        connection.execute(delete(store.outbox).where(store.outbox.c.job_id == job.id))
    jobs.celery.send_task(jobs.task_name, args=[job.id], queue=jobs.queue.name, retry=False)
    return job


CASES: dict[str, Callable[[Jobs], Job]] = {"outbox": outbox, "direct": direct}


def settle(jobs: Jobs, job_id: str) -> Job:
    """Wait for the job to succeed and the outbox to be empty (nothing left in flight)."""
    deadline = time.monotonic() + 30
    while True:
        found = jobs.store.get(job_id)
        if found is not None and found.status == "succeeded" and not jobs.store.pending_outbox():
            assert found.attempts == 1, found
            return found
        assert found is None or found.status in ("queued", "running", "succeeded"), found
        if time.monotonic() > deadline:
            raise SystemExit(f"job {job_id} did not finish in 30 s: {found}")
        time.sleep(POLL)


@dataclass
class Latency:
    """One case's jobs, one at a time: milliseconds from just before the accept."""

    claimed: list[float] = field(default_factory=list)
    finished: list[float] = field(default_factory=list)
    caller: list[float] = field(default_factory=list)


def one(jobs: Jobs, case: str, found: Latency | None) -> None:
    sent = datetime.now(UTC)
    started = time.perf_counter_ns()
    job = CASES[case](jobs)
    returned = time.perf_counter_ns()
    done = settle(jobs, job.id)
    assert done.started_at is not None and done.finished_at is not None, done
    if found is not None:
        found.claimed.append((done.started_at - sent).total_seconds() * 1e3)
        found.finished.append((done.finished_at - sent).total_seconds() * 1e3)
        found.caller.append((returned - started) / 1e6)


def latency(side: Side, count: int) -> dict[str, Latency]:
    """``count`` jobs of each case (after a warm-up), one at a time, in rounds
    of outbox, outbox, direct, direct: each case follows each equally often."""
    rotation = ("outbox", "outbox", "direct", "direct")
    for _ in range(WARM_UP // 2):
        for case in rotation:
            one(side.jobs, case, None)
    found = {case: Latency() for case in CASES}
    for _ in range(count // 2):
        for case in rotation:
            one(side.jobs, case, found[case])
    return found


@dataclass(frozen=True)
class Round:
    case: str
    jobs: int
    seconds: float
    accept_seconds: float

    @property
    def rate(self) -> float:
        return self.jobs / self.seconds

    @property
    def accept_rate(self) -> float:
        return self.jobs / self.accept_seconds


def burst(side: Side, case: str, count: int) -> Round:
    """``count`` jobs accepted back to back by one thread, then waited for."""
    jobs, call = side.jobs, CASES[case]
    sent = datetime.now(UTC)
    started = time.perf_counter()
    ids = [call(jobs).id for _ in range(count)]
    accepted = time.perf_counter() - started
    j = jobs.store.jobs.c
    deadline = time.monotonic() + 300
    while True:
        with jobs.store.engine.connect() as connection:
            counts = dict(
                connection.execute(
                    select(j.status, func.count()).where(j.id.in_(ids)).group_by(j.status)
                ).all()
            )
            if counts.get("succeeded") == count and not jobs.store.pending_outbox():
                last = connection.execute(select(func.max(j.finished_at)).where(j.id.in_(ids)))
                finished = last.scalar()
                break
        assert set(counts) <= {"queued", "running", "succeeded"}, counts
        if time.monotonic() > deadline:
            raise SystemExit(f"{side.name}, {case}: jobs left after 300 s: {counts}")
        time.sleep(0.05)
    if finished.tzinfo is None:  # SQLite gives naive datetimes back; all are UTC
        finished = finished.replace(tzinfo=UTC)
    return Round(case, count, (finished - sent).total_seconds(), accepted)


def throughput(side: Side, count: int) -> list[Round]:
    """:data:`ROUNDS` rounds of each case, outbox, direct, direct, outbox, ...
    (each case going first equally often), after one small round of each."""
    for case in CASES:
        burst(side, case, WARM_UP)
    order = [("outbox", "direct"), ("direct", "outbox")]
    return [burst(side, case, count) for index in range(ROUNDS) for case in order[index % 2]]


# -- the report ----------------------------------------------------------------


def p50(values: list[float]) -> float:
    return float(statistics.median(values))


def p90(values: list[float]) -> float:
    return float(statistics.quantiles(values, n=10, method="inclusive")[8])


@dataclass(frozen=True)
class Figures:
    """One setup's figures: rates in jobs/s, latencies in milliseconds."""

    name: str
    latency: dict[str, Latency]
    rounds: list[Round]

    def rates(self, case: str) -> list[float]:
        return [r.rate for r in self.rounds if r.case == case]

    def accept_rates(self, case: str) -> list[float]:
        return [r.accept_rate for r in self.rounds if r.case == case]

    def added(self, which: Callable[[list[float]], float]) -> float:
        return which(self.latency["outbox"].claimed) - which(self.latency["direct"].claimed)

    def pair_ratios(self) -> list[float]:
        """outbox / direct jobs/s of each two rounds run back to back: the
        machine's load moves from minute to minute, so rounds are compared
        with their neighbour, not with the median of the others."""
        pairs = zip(self.rounds[0::2], self.rounds[1::2], strict=True)
        ratios = []
        for first, second in pairs:
            found = {first.case: first.rate, second.case: second.rate}
            ratios.append(found["outbox"] / found["direct"])
        return ratios

    def added_blocks(self) -> list[float]:
        out, into = self.latency["outbox"].claimed, self.latency["direct"].claimed
        size = len(out) // BLOCKS
        return [
            p50(out[i * size : (i + 1) * size]) - p50(into[i * size : (i + 1) * size])
            for i in range(BLOCKS)
        ]


def tables(found: list[Figures]) -> str:
    lines = [
        "| broker, database | case | jobs/s (median round) | jobs/s of every round "
        "| accepted/s by the caller (median round) |",
        "|---|---|---:|---|---:|",
    ]
    for f in found:
        for case in CASES:
            rates = f.rates(case)
            lines.append(
                f"| {f.name} | {case} | {p50(rates):.1f} "
                f"| {' / '.join(f'{rate:.1f}' for rate in rates)} "
                f"| {p50(f.accept_rates(case)):.1f} |"
            )
    lines += [
        "",
        "| broker, database | case | to the claim, p50 | p90 | to succeeded, p50 | p90 "
        "| the caller waits, p50 | p90 |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for f in found:
        for case in CASES:
            seen = f.latency[case]
            lines.append(
                f"| {f.name} | {case} | {p50(seen.claimed):.2f} | {p90(seen.claimed):.2f} "
                f"| {p50(seen.finished):.2f} | {p90(seen.finished):.2f} "
                f"| {p50(seen.caller):.2f} | {p90(seen.caller):.2f} |"
            )
    lines += [
        "",
        "| broker, database | added by the outbox to the claim, p50 | p90 "
        f"| p50 added in each {BLOCKS}th of the run | outbox vs direct, jobs/s "
        "(median pair of rounds) | in each pair |",
        "|---|---:|---:|---|---:|---|",
    ]
    for f in found:
        each = " / ".join(f"{value:+.2f}" for value in f.added_blocks())
        ratios = f.pair_ratios()
        lines.append(
            f"| {f.name} | {f.added(p50):+.2f} ms | {f.added(p90):+.2f} ms | {each} "
            f"| {p50(ratios):.2f}x | {' / '.join(f'{r:.2f}' for r in ratios)} |"
        )
    return "\n".join(lines)


def summary(found: list[Figures]) -> str:
    said = [
        f"{f.name}: {p50(f.rates('outbox')):.1f} jobs/s through the outbox "
        f"({p50(f.rates('direct')):.1f} published directly; "
        f"{p50(f.pair_ratios()):.2f}x side by side); the outbox adds "
        f"{f.added(p50):.2f} ms at p50 and {f.added(p90):.2f} ms at p90 from the accept "
        "to the worker's claim"
        for f in found
    ]
    return "; ".join(said) + "."


def chosen(value: str, known: dict[str, object], option: str) -> list[str]:
    names = [name.strip() for name in value.split(",") if name.strip()]
    if not names or set(names) - set(known):
        raise SystemExit(f"{option}: a comma-separated list of {', '.join(known)}")
    return names


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=80, help="per throughput round")
    parser.add_argument("--latency", type=int, default=100, help="per case, one at a time")
    parser.add_argument("--brokers", default=",".join(BROKERS))
    parser.add_argument("--databases", default=",".join(DATABASES))
    parser.add_argument("--write", type=Path)
    parser.add_argument("--worker-child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker_child:
        return worker_child(*args.worker_child)
    brokers = chosen(args.brokers, BROKERS, "--brokers")
    databases = chosen(args.databases, DATABASES, "--databases")
    if args.latency < 2 * BLOCKS:
        parser.error(f"--latency must be at least {2 * BLOCKS}")
    clean_environment()
    store = None
    if "redis" in brokers:
        store = redis.Redis.from_url(BROKERS["redis"][1], socket_timeout=1)
        try:
            store.ping()
        except redis.RedisError as error:
            raise SystemExit(f"the Redis case needs {BROKERS['redis'][1]}: {error}") from None
        store.flushdb()
    digest, state = inprocess.source_digest(), inprocess.source_state()
    found = []
    try:
        with tempfile.TemporaryDirectory(prefix="lockgate-bench-jobs-") as folder:
            for broker_key in brokers:
                broker_name, broker = BROKERS[broker_key]
                for kind in databases:
                    here = Path(folder) / f"{broker_key}-{kind}"
                    here.mkdir()
                    name = f"{broker_name}, {DATABASES[kind]}"
                    with fresh_database(kind, here) as database:
                        side = start(name, broker, database, here)
                        try:
                            seen = latency(side, args.latency)
                            rounds = throughput(side, args.jobs)
                        finally:
                            stop(side)
                            delete_queues(side)
                    found.append(Figures(name, seen, rounds))
                    print(f"{name}: done", file=sys.stderr)
    finally:
        if store is not None:
            store.flushdb()
            store.close()
    result = tables(found)
    print(result)
    print(summary(found))
    if inprocess.source_digest() != digest:
        print("src/ changed during the run: these figures mix two versions")
        return 1
    if args.write:
        write(args.write, result, found, args, state, brokers, databases)
    return 0


def write(
    path: Path,
    result: str,
    found: list[Figures],
    args: argparse.Namespace,
    state: str,
    brokers: list[str],
    databases: list[str],
) -> None:
    on = ", ".join(f"{BROKERS[key][0]} (`{BROKERS[key][1]}`)" for key in brokers)
    kept = {"sqlite": "a fresh SQLite file", "postgresql": f"a fresh schema in `{POSTGRES}`"}
    write_section(
        path,
        "## Jobs through the outbox, broker and worker (loopback)",
        f"Command: `make bench` (`python bench/jobs.py --jobs {args.jobs} --latency "
        f"{args.latency} --brokers {','.join(brokers)} --databases {','.join(databases)}`). "
        "No target figure: the figures as measured. One Flask app with "
        "`lockgate.jobs.Jobs` (engine from `make_engine`, as the services make theirs), "
        "a no-op job type, the library's default settings, for each setup: a broker "
        f"({on}, on queues of a prefix of the run's own) and a database "
        f"({' and '.join(kept[kind] for kind in databases)}). The worker: `run_worker` "
        f"(Celery, prefork, concurrency {CONCURRENCY}, JSON logs on) in a process of its "
        "own on the same database and broker, its own relay running as in the fleet. "
        "Cases, from the caller's process: **outbox**, `jobs.accept(...)` (job row and "
        "outbox entry in one transaction; the caller's relay thread, woken by the "
        "accept, publishes and deletes the entry); **direct**, the same rows by the same "
        "`store.accept` with the outbox entry deleted in that transaction, then after the "
        "commit the caller publishes the job id itself with the relay's own `send_task` "
        "call (what a service without an outbox does: commit, then publish). Latency: "
        f"one job in flight at a time, {args.latency} per case after {WARM_UP} of "
        "warm-up, in rounds of outbox, outbox, direct, direct, from just before the "
        "accept to the worker's claim (`started_at`) and to `finished_at` (wall clock, "
        "one machine); the caller waits for `succeeded` and an empty outbox before the "
        'next job; "the caller waits": until the accept (or the write and the publish) '
        f"returns. Throughput: {ROUNDS} rounds of {args.jobs} jobs per case (outbox, "
        "direct, direct, outbox, ...), accepted back to back by one thread, jobs/s from "
        "just before the first accept to the last `finished_at`; accepted/s by the caller: "
        "the round's jobs over the time its accepts took (a round ends with the slower of "
        "the caller and the worker); outbox vs direct: the ratio of jobs/s in each two "
        "rounds run back to back (a round is compared with its neighbour, as the load "
        "moves), the median pair reported. The setups ran one after the other, each with "
        "its own worker: compare the cases within a setup, not the setups. Jobs/s and "
        "milliseconds; code measured: "
        f"{state}; {os.cpu_count()} cores shared by the caller, the worker, the broker, "
        "the database and whatever else ran; Python "
        f"{platform.python_version()} on {platform.machine()}, measured "
        f"{datetime.now(UTC):%Y-%m-%d}.\n\n{result}\n\n{summary(found)}",
    )


if __name__ == "__main__":
    sys.exit(main())
