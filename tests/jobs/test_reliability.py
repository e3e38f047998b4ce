"""Nothing lost: the kill -9 drill, a broker outage, a poison job, cancellation.

Real worker processes (`lockgate worker`, prefork) on the machine's RabbitMQ
and Redis, the web side under `lockgate run`; each test on queues of its own.
Effects are counted where they land: the export files in the results folder
and the ``order_events`` rows of the orders database.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.jobs.fleet import (
    RABBITMQ,
    REDIS,
    add_users,
    all_finished,
    attempts,
    dead_letters,
    job_states,
    jobs_fleet,
    order_events,
    place_order,
    start_export,
)
from tests.servers import free_port, unique_email, wait_for

pytestmark = pytest.mark.server

USERS = 20_000


def make_user(http: httpx.Client) -> int:
    body = {"first_name": "Grace", "last_name": "Hopper", "email": unique_email("drill")}
    response = http.post("/api/v2/users", json=body)
    assert response.status_code == 201, response.text
    return int(response.json()["id"])


@pytest.mark.parametrize("broker", [RABBITMQ, REDIS], ids=["rabbitmq", "redis"])
def test_kill_9_mid_task_loses_nothing_and_does_nothing_twice(tmp_path: Path, broker: str) -> None:
    with jobs_fleet(tmp_path, broker) as (fleet, worker):
        data = Path(fleet.env["LOCKGATE_DATA_DIR"])
        add_users(data, USERS)
        user = make_user(fleet.http)
        exports = [start_export(fleet.http, "csv" if n % 2 else "jsonl") for n in range(10)]
        orders = [place_order(fleet.http, user) for _ in range(10)]
        confirmations = [location for _, location in orders]
        jobs = exports + confirmations

        # Mid-task: a job is running (holding its lease) when the worker dies.
        wait_for(
            lambda: [s for s in job_states(fleet.http, exports) if s["status"] == "running"],
            60,
            "an export to be running",
        )
        worker.kill()
        # Held by the dead worker: still "running", with nobody running them.
        cut = [s["id"] for s in job_states(fleet.http, jobs) if s["status"] == "running"]
        assert cut, "no job was running at the kill: the drill proved nothing"

        worker.start()
        states = wait_for(lambda: all_finished(fleet.http, jobs), 120, "all 20 jobs to finish")

        assert [s["status"] for s in states] == ["succeeded"] * 20, states
        # Each job cut off was claimed again, by a delivery after the kill.
        counted = {**attempts(data, "users", cut), **attempts(data, "orders", cut)}
        assert counted and all(n >= 2 for n in counted.values()), counted
        # Exports: one whole file per job, no partial file left.
        files = sorted((data / "job-results" / "users").iterdir())
        assert [f.name for f in files] == sorted(s["id"] for s in states[:10])
        for state, location in zip(states[:10], exports, strict=True):
            assert state["result"]["rows"] == USERS + 1
            download = fleet.http.get(state["result"]["href"])
            assert download.status_code == 200
            lines = download.text.splitlines()
            header = 1 if state["result"]["format"] == "csv" else 0
            assert len(lines) == USERS + 1 + header, location
        # Confirmations: each order confirmed, by exactly one event.
        events = order_events(data)
        assert {order_id: events.get(order_id) for order_id, _ in orders} == {
            order_id: ["confirmed"] for order_id, _ in orders
        }
        for order_id, _ in orders:
            assert fleet.http.get(f"/api/v2/orders/{order_id}").json()["status"] == "confirmed"


@pytest.fixture
def own_redis(tmp_path: Path):  # type: ignore[no-untyped-def]
    """A redis-server of the test's own on a free port, which it stops and starts."""
    port = free_port()
    folder = tmp_path / "redis"
    folder.mkdir()

    class Server:
        url = f"redis://127.0.0.1:{port}/0"
        process: subprocess.Popen[bytes] | None = None

        def start(self) -> None:
            self.process = subprocess.Popen(
                [shutil.which("redis-server") or "redis-server", "--port", str(port),
                 "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(folder)],
                stdout=subprocess.DEVNULL,
            )  # fmt: skip
            deadline = time.monotonic() + 10
            import redis

            while True:
                try:
                    redis.Redis(port=port).ping()
                    return
                except redis.ConnectionError:
                    assert time.monotonic() < deadline, "redis-server did not start"
                    time.sleep(0.05)

        def stop(self) -> None:
            if self.process is not None:
                self.process.send_signal(signal.SIGTERM)
                self.process.wait(10)
                self.process = None

    server = Server()
    server.start()
    try:
        yield server
    finally:
        server.stop()


def test_jobs_accepted_while_the_broker_is_down_all_finish(tmp_path: Path, own_redis) -> None:  # type: ignore[no-untyped-def]
    with jobs_fleet(tmp_path, own_redis.url) as (fleet, _worker):
        user = make_user(fleet.http)
        own_redis.stop()
        accepted = []
        for n in range(10):
            if n % 2:
                accepted.append(start_export(fleet.http))
            else:
                accepted.append(place_order(fleet.http, user)[1])
        time.sleep(2)  # the relay tries, and fails, meanwhile
        assert {s["status"] for s in job_states(fleet.http, accepted)} == {"queued"}
        own_redis.start()
        states = wait_for(lambda: all_finished(fleet.http, accepted), 90, "the 10 jobs to finish")
        assert [s["status"] for s in states] == ["succeeded"] * 10, states


def test_a_poison_job_fails_after_n_deliveries_dead_lettered_and_does_not_block(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with jobs_fleet(tmp_path, RABBITMQ, start_worker=False,
                    LOCKGATE_JOBS_MAX_DELIVERIES="3") as (fleet, worker):  # fmt: skip
        worker.concurrency = 1  # one slot: a job that held it would block the rest
        worker.start()
        # A message the API would never have made (it checks the format): its
        # export fails on every delivery. Accepted through the library, as the
        # users service does, with the fleet's database and broker.
        for key, value in fleet.env.items():
            if key.startswith("LOCKGATE_") or key == "DATABASE_URL":
                monkeypatch.setenv(key, value)
        from services.users import create_app

        jobs = create_app().extensions["lockgate.jobs"]
        poison = jobs.accept("users.export", {"format": "xml"})
        assert jobs.relay.sweep() == 1
        behind = [start_export(fleet.http) for _ in range(3)]  # the same queue, behind it
        everything = [f"/api/v2/jobs/{poison.id}", *behind]
        failed, *exported = wait_for(lambda: all_finished(fleet.http, everything), 90, "jobs")

        assert failed["status"] == "failed", failed
        assert failed["error"]["code"] == "JobError"
        assert "unknown export format 'xml'" in failed["error"]["detail"]
        assert attempts(Path(fleet.env["LOCKGATE_DATA_DIR"]), "users", [poison.id]) == {
            poison.id: 3
        }
        assert [s["status"] for s in exported] == ["succeeded"] * 3
        # They ran while it was failing, not after it.
        assert min(s["finished_at"] for s in exported) < failed["finished_at"]
        prefix = fleet.env["LOCKGATE_JOBS_QUEUE_PREFIX"]
        dead = wait_for(lambda: dead_letters(RABBITMQ, f"{prefix}users.dead"), 10, "a dead letter")
        assert dead == 1


def test_a_cancelled_job_stops_and_says_so(tmp_path: Path) -> None:
    with jobs_fleet(tmp_path, REDIS, start_worker=False) as (fleet, worker):
        data = Path(fleet.env["LOCKGATE_DATA_DIR"])
        # Queued: cancelled at once, and never run.
        queued = start_export(fleet.http)
        response = fleet.http.delete(queued)
        assert response.status_code == 200, response.text
        assert response.json()["status"] == "cancelled"
        # Running: asked to stop, it stops between chunks.
        add_users(data, 100_000)
        worker.start()
        running = start_export(fleet.http)
        wait_for(lambda: fleet.http.get(running).json()["status"] == "running", 60, "running")
        response = fleet.http.delete(running)
        assert response.status_code == 202, response.text
        state = wait_for(
            lambda: (s := fleet.http.get(running).json())["status"] != "running" and s, 60, "stop"
        )
        assert state["status"] == "cancelled", state
        assert state["progress"] < 1
        assert state["result"] is None
        assert fleet.http.get(queued).json()["status"] == "cancelled"
        assert not list((data / "job-results" / "users").glob("*"))
        # A finished job cannot be cancelled.
        again = fleet.http.delete(running)
        assert again.status_code == 409
        assert again.headers["Content-Type"] == "application/problem+json"
