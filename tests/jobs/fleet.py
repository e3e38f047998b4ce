"""A fleet whose job worker the test starts, kills and restarts itself.

The web side is `lockgate run` on a manifest without a worker table; the
worker is `lockgate worker`, a process group of its own, so SIGKILL reaches
its master and its children at once. Brokers are the machine's RabbitMQ and
Redis (or one the test starts), each test on queues of its own prefix.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from tests.servers import LOCKGATE, ROOT, Fleet, running_fleet, wait_for

RABBITMQ = "amqp://guest:guest@127.0.0.1:5672//"
#: A Redis database of their own for the reliability tests (the resilience tests
#: use 14, the confirmation tests 10): kombu keeps its unacked messages per database.
REDIS = "redis://127.0.0.1:6379/13"
REDIS_CONFIRMATION = "redis://127.0.0.1:6379/10"
ITEMS = [{"sku": "tea", "quantity": 2, "unit_price_cents": 450}]


def manifest_without_worker(folder: Path) -> Path:
    """The repository's fleet.toml, its worker left out, migrations by absolute path."""
    text = (ROOT / "fleet.toml").read_text()
    text = text.split("[services.worker]")[0]
    text = text.replace('migrations = "services/', f'migrations = "{ROOT}/services/')
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "fleet.toml"
    path.write_text(text)
    return path


class Worker:
    """`lockgate worker` for users and orders, in its own process group."""

    def __init__(self, env: dict[str, str], base: str, log: Path, pool: str = "prefork") -> None:
        self.env, self.base, self.log, self.pool = env, base, log, pool
        self.concurrency = 2
        self.process: subprocess.Popen[str] | None = None

    def start(self) -> None:
        output = self.log.open("a")
        self.process = subprocess.Popen(
            [
                str(LOCKGATE), "worker", "--queues", "users,orders",
                "--concurrency", str(self.concurrency),
                "--pool", self.pool, "--url", self.base,
            ],
            cwd=ROOT,
            env=self.env,
            stdout=output,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )  # fmt: skip
        output.close()
        deadline = time.monotonic() + 60
        while "ready." not in self.log.read_text():
            assert self.process.poll() is None, self.log.read_text()[-3000:]
            assert time.monotonic() < deadline, self.log.read_text()[-3000:]
            time.sleep(0.1)

    def kill(self) -> None:
        """SIGKILL to the master and every child at once."""
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(10)
        self.process = None
        # The restarted worker looks for its own "ready.", not the first one's.
        self.log.write_text(self.log.read_text().replace("ready.", "was ready"))

    def stop(self) -> None:
        if self.process is None:
            return
        with suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            with suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(5)
        self.process = None

    def peak_memory_kb(self) -> int:
        """The worker process's high-water mark of resident memory (VmHWM)."""
        assert self.process is not None
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
        raise AssertionError("no VmHWM")


def job_settings(broker: str, **extra: str) -> dict[str, str]:
    """Short leases and quick relays, so a drill ends in seconds; no
    ``broker``: the embedded one."""
    chosen = {"LOCKGATE_JOBS_BROKER_URL": broker} if broker else {}
    return {
        **chosen,
        "LOCKGATE_JOBS_QUEUE_PREFIX": f"test-{uuid.uuid4().hex[:10]}-",
        "LOCKGATE_JOBS_LEASE": "3",
        "LOCKGATE_JOBS_RELAY_INTERVAL": "0.3",
        "LOCKGATE_JOBS_RETRY_BACKOFF": "0.2",
        "LOCKGATE_JOBS_REPUBLISH_AFTER": "10",
        "LOCKGATE_JOBS_TIME_LIMIT": "60",
        **extra,
    }


@contextmanager
def jobs_fleet(
    tmp: Path, broker: str, *, start_worker: bool = True, **extra: str
) -> Iterator[tuple[Fleet, Worker]]:
    env = {"LOCKGATE_FLEET": str(manifest_without_worker(tmp / "manifest")),
           **job_settings(broker, **extra)}  # fmt: skip
    with running_fleet(tmp, env) as fleet:
        worker = Worker(fleet.env, fleet.base, tmp / "worker.log")
        try:
            if start_worker:
                worker.start()
            yield fleet, worker
        finally:
            worker.stop()
            if broker.startswith("amqp"):
                delete_queues(broker, fleet.env["LOCKGATE_JOBS_QUEUE_PREFIX"])


def delete_queues(broker: str, prefix: str) -> None:
    from kombu import Connection

    with Connection(broker) as connection:
        channel = connection.channel()
        for name in ("users", "orders", "users.dead", "orders.dead"):
            with suppress(Exception):
                channel.queue_delete(f"{prefix}{name}")
                channel = connection.channel()
        for name in ("users", "orders", "lockgate.dead"):
            with suppress(Exception):
                channel.exchange_delete(f"{prefix}{name}")
                channel = connection.channel()


def dead_letters(broker: str, queue: str) -> int:
    """Messages waiting on a RabbitMQ queue (a passive declare: never creates it)."""
    from kombu import Connection

    with Connection(broker) as connection:
        channel = connection.channel()
        found = channel.queue_declare(queue=queue, passive=True)
        return int(found.message_count)


def add_users(data: Path, count: int) -> None:
    """``count`` users straight into the users service's SQLite file (setup only)."""
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
    tag = uuid.uuid4().hex[:8]
    with sqlite3.connect(data / "users.db", timeout=30) as connection:
        connection.executemany(
            "INSERT INTO users (first_name, last_name, email, email_key, created_at)"
            " VALUES (?, ?, ?, ?, ?)",
            (
                ("Ada", f"Bulk{n}", f"bulk-{tag}-{n}@example.com", f"bulk-{tag}-{n}@example.com",
                 now)
                for n in range(count)
            ),
        )  # fmt: skip


def attempts(data: Path, service: str, job_ids: list[str]) -> dict[str, int]:
    """How many deliveries each job was claimed by, from its service's job table."""
    marks = ",".join("?" * len(job_ids))
    with sqlite3.connect(data / f"{service}.db", timeout=30) as connection:
        rows = connection.execute(
            f"SELECT id, attempts FROM {service}_jobs WHERE id IN ({marks})", job_ids
        ).fetchall()
    return dict(rows)


def order_events(data: Path) -> dict[int, list[str]]:
    with sqlite3.connect(data / "orders.db", timeout=30) as connection:
        rows = connection.execute("SELECT order_id, event FROM order_events ORDER BY id").fetchall()
    found: dict[int, list[str]] = {}
    for order_id, event in rows:
        found.setdefault(order_id, []).append(event)
    return found


def finished(http: httpx.Client, location: str, timeout: float = 60) -> dict[str, Any]:
    """The job at ``location`` once it has finished (succeeded, failed, cancelled)."""
    found: dict[str, Any] = wait_for(
        lambda: (s := http.get(location).json())["status"] not in ("queued", "running") and s,
        timeout,
        f"{location} to finish",
    )
    return found


def job_states(http: httpx.Client, locations: list[str]) -> list[dict[str, Any]]:
    states = []
    for location in locations:
        response = http.get(location)
        assert response.status_code == 200, response.text
        states.append(response.json())
    return states


def all_finished(http: httpx.Client, locations: list[str]) -> list[dict[str, Any]] | None:
    states = job_states(http, locations)
    done = all(s["status"] in ("succeeded", "failed", "cancelled") for s in states)
    return states if done else None


def start_export(http: httpx.Client, fmt: str = "csv") -> str:
    response = http.post("/api/v2/users/exports", json={"format": fmt})
    assert response.status_code == 202, response.text
    location: str = response.headers["Location"]
    return location


def place_order(http: httpx.Client, user_id: int) -> tuple[int, str]:
    """A new order's id and its confirmation job's location."""
    response = http.post("/api/v2/orders", json={"user_id": user_id, "items": ITEMS})
    assert response.status_code == 201, response.text
    return int(response.json()["id"]), confirmation(response)


def confirmation(response: httpx.Response) -> str:
    """The confirmation job a new order links (``Link: <...>; rel=...confirmation``)."""
    link = response.headers["Link"]
    assert 'rel="https://lockgate.dev/rels/confirmation"' in link, link
    return link.split(">")[0].lstrip("<")
