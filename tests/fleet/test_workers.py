"""The worker in the fleet: `[services.worker]` in the manifest, started and
stopped with `lockgate serve`, and the worker's relay publishing what the web
side accepted but never published."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from lockgate.errors import ConfigurationError
from lockgate.fleet import load_manifest
from tests.jobs.fleet import all_finished, jobs_fleet, start_export
from tests.servers import (
    LOCKGATE,
    ROOT,
    create_client,
    free_port,
    stop,
    token_for,
    wait_for,
    wait_until_up,
)


def test_the_manifest_declares_the_worker() -> None:
    fleet = load_manifest(ROOT / "fleet.toml")
    (worker,) = fleet.workers
    assert worker.queues == ("users", "orders")
    assert worker.replicas >= 1 and worker.concurrency >= 1
    # A worker is not a web service: nothing routes to it.
    assert worker.name not in {service.name for service in fleet.services}


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ('queues = ["nobody"]', "no service 'nobody'"),
        ("queues = []", "queues must be a list"),
        ('queues = ["users"]\nreplicas = 0', "replicas must be a positive integer"),
        ('queues = ["users"]\napp = "x:y"', "unknown keys app"),
    ],
)
def test_a_bad_worker_table_is_refused_by_name(tmp_path: Path, table: str, message: str) -> None:
    manifest = tmp_path / "fleet.toml"
    manifest.write_text(
        f'[services.users]\napp = "services.users:create_app"\n\n[services.worker]\n{table}\n'
    )
    with pytest.raises(ConfigurationError, match=re.escape(message)):
        load_manifest(manifest)


@pytest.mark.server
def test_serve_starts_the_worker_and_stops_it(tmp_path: Path) -> None:
    port = free_port()
    # Two web workers need Redis (shared limits and cache); jobs on the embedded broker.
    env = {**os.environ, "LOCKGATE_DATA_DIR": str(tmp_path / "data"),
           "REDIS_URL": "redis://127.0.0.1:6379/11"}  # fmt: skip
    log = (tmp_path / "serve.log").open("w")
    process = subprocess.Popen(
        [str(LOCKGATE), "serve", "--bind", f"127.0.0.1:{port}", "--workers", "2",
         "--drain-delay", "0", "--graceful-timeout", "5"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(process, base, tmp_path / "serve.log")
        printed = re.findall(r"worker: .* \(pids ([\d, ]+)\)", (tmp_path / "serve.log").read_text())
        pids = [int(pid) for pid in printed[0].split(",")]
        assert all(Path(f"/proc/{pid}").exists() for pid in pids)
        client_id, secret = create_client(env, "serve-test", "users:read")
        import httpx

        token = token_for(base, client_id, secret)
        with httpx.Client(
            base_url=base, timeout=10, headers={"Authorization": f"Bearer {token}"}
        ) as http:
            location = start_export(http)
            states = wait_for(lambda: all_finished(http, [location]), 60, "the export")
            assert states[0]["status"] == "succeeded", states
    finally:
        stop(process)
        log.close()
    # The worker replicas went with it.
    wait_for(lambda: not any(_alive(pid) for pid in pids), 30, "the workers to exit")


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"


@pytest.mark.server
def test_the_workers_relay_publishes_what_the_web_side_never_did(tmp_path: Path) -> None:
    # The web process's relay off: as if it died right after answering 202.
    with jobs_fleet(tmp_path, "", LOCKGATE_JOBS_RELAY="false") as (fleet, _):
        jobs = [start_export(fleet.http) for _ in range(3)]
        states = wait_for(lambda: all_finished(fleet.http, jobs), 60, "the exports")
        assert [s["status"] for s in states] == ["succeeded"] * 3


@pytest.mark.server
def test_run_starts_the_manifests_worker_and_an_order_is_confirmed(tmp_path: Path) -> None:
    from tests.jobs.fleet import place_order
    from tests.servers import running_fleet, unique_email

    with running_fleet(tmp_path, jobs=True) as fleet:
        assert re.search(r"worker: +worker x\d+ on users, orders", fleet.log.read_text())
        user = fleet.http.post(
            "/api/v2/users",
            json={"first_name": "Run", "last_name": "Jobs", "email": unique_email("run")},
        ).json()["id"]
        order_id, job = place_order(fleet.http, user)
        states = wait_for(lambda: all_finished(fleet.http, [job]), 60, "the confirmation")
        assert states[0]["status"] == "succeeded", states
        assert fleet.http.get(f"/api/v2/orders/{order_id}").json()["status"] == "confirmed"
