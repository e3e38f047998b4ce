"""The job resource over HTTP and the `lockgate jobs` CLI, against a running fleet.

Who sees a job (its client with the job's scope, or ops:read; anyone else
gets the 404 of an unknown id), cancelling, the metrics read from the job
tables, the request id carried into the worker's log lines, and list, show
and retry from the command line. The embedded broker of `make run`.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

from tests.jobs.fleet import Worker, jobs_fleet, start_export
from tests.jobs.fleet import finished as finished_job
from tests.servers import LOCKGATE, ROOT, Fleet, token_for

pytestmark = pytest.mark.server


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Fleet, Worker]]:
    tmp = tmp_path_factory.mktemp("jobs-api")
    with jobs_fleet(tmp, "") as running:
        yield running


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def finished(fleet: Fleet, location: str) -> dict[str, Any]:
    return finished_job(fleet.http, location, 60)


def lockgate(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LOCKGATE), *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )


def test_a_job_is_seen_by_its_client_and_ops_only(fleet: tuple[Fleet, Worker]) -> None:
    running, _ = fleet
    location = start_export(running.http)
    state = finished(running, location)
    href = state["result"]["href"]
    unknown = running.http.get("/api/v2/jobs/users-00000000000000000000000000000000")
    assert unknown.status_code == 404
    assert unknown.headers["Content-Type"] == "application/problem+json"

    other_id, other_secret = running.create_client("other-reader", "users:read")
    other = bearer(token_for(running.base, other_id, other_secret))
    for path in (location, href):
        hidden = running.anonymous.get(path, headers=other)
        assert hidden.status_code == 404, hidden.text
        # Exactly what an unknown id gets: nothing tells that it exists.
        assert hidden.json()["code"] == unknown.json()["code"] == "JobNotFound"
    assert running.anonymous.delete(location, headers=other).status_code == 404

    # The same client, without the scope the job's resource needs: 404 too.
    narrow = bearer(running.token("orders:read"))
    assert running.anonymous.get(location, headers=narrow).status_code == 404

    ops_id, ops_secret = running.create_client("operator", "ops:read")
    ops = bearer(token_for(running.base, ops_id, ops_secret))
    assert running.anonymous.get(location, headers=ops).status_code == 200
    assert running.anonymous.get(href, headers=ops).status_code == 200

    assert running.anonymous.get(location).status_code == 401
    assert running.anonymous.get(location).headers["WWW-Authenticate"].startswith("Bearer")


def test_one_job_under_every_version_and_through_its_service(
    fleet: tuple[Fleet, Worker],
) -> None:
    running, _ = fleet
    state = finished(running, start_export(running.http))
    job_id = state["id"]
    for path in (f"/api/v1/jobs/{job_id}", f"/services/users/api/v2/jobs/{job_id}"):
        response = running.http.get(path)
        assert response.status_code == 200, path
        assert response.json()["id"] == job_id
    # A job id names its service: the orders service has no such job.
    assert running.http.get(f"/services/orders/api/v2/jobs/{job_id}").status_code == 404


def test_cancelling_a_finished_job_is_409_and_only_its_client_may(
    fleet: tuple[Fleet, Worker],
) -> None:
    running, _ = fleet
    location = start_export(running.http)
    finished(running, location)
    response = running.http.delete(location)
    assert response.status_code == 409
    assert response.json()["code"] == "JobFinished"
    ops_id, ops_secret = running.create_client("operator-2", "ops:read users:read")
    ops = bearer(token_for(running.base, ops_id, ops_secret))
    fresh = start_export(running.http)
    assert running.anonymous.delete(fresh, headers=ops).status_code == 403


def test_metrics_count_jobs_by_type_and_outcome_and_queue_depth(
    fleet: tuple[Fleet, Worker],
) -> None:
    running, _ = fleet
    finished(running, start_export(running.http))
    text = running.http.get("/metrics").text
    assert 'jobs_total{outcome="succeeded",type="users.export"}' in text
    assert 'job_duration_seconds_bucket{le="+Inf",type="users.export"}' in text
    assert "# TYPE jobs_queue_depth gauge" in text
    counted = [
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith('jobs_total{outcome="succeeded",type="users.export"}')
    ]
    assert counted and counted[0] >= 1


def test_the_request_id_goes_with_the_job_into_the_worker_log(
    fleet: tuple[Fleet, Worker],
) -> None:
    running, worker = fleet
    response = running.http.post(
        "/api/v2/users/exports",
        json={"format": "csv"},
        headers={"X-Request-ID": "export-trace-4711"},
    )
    finished(running, response.headers["Location"])
    lines = [
        json.loads(line)
        for line in worker.log.read_text().splitlines()
        if line.startswith("{") and "export-trace-4711" in line
    ]
    events = {line["event"] for line in lines if line.get("job_id") == response.json()["id"]}
    assert {"job started", "job succeeded"} <= events
    assert all(line["request_id"] == "export-trace-4711" for line in lines)


def test_jobs_list_show_and_retry_from_the_command_line(fleet: tuple[Fleet, Worker]) -> None:
    running, worker = fleet
    worker.stop()
    try:
        location = start_export(running.http)
        job_id = location.rsplit("/", 1)[1]
        assert running.http.delete(location).json()["status"] == "cancelled"

        listed = lockgate(running.env, "jobs", "list", "--json", "--service", "users")
        assert listed.returncode == 0, listed.stderr
        rows = {row["id"]: row for row in json.loads(listed.stdout)}
        assert rows[job_id]["status"] == "cancelled"

        shown = lockgate(running.env, "jobs", "show", job_id, "--json")
        assert shown.returncode == 0, shown.stderr
        assert json.loads(shown.stdout)["status"] == "cancelled"

        retried = lockgate(running.env, "jobs", "retry", job_id)
        assert retried.returncode == 0, retried.stderr
        assert running.http.get(location).json()["status"] == "queued"
        again = lockgate(running.env, "jobs", "retry", job_id)
        assert again.returncode != 0
        assert "only failed or cancelled" in again.stderr
        missing = lockgate(running.env, "jobs", "show", "users-ffffffffffffffffffffffffffffffff")
        assert missing.returncode != 0
    finally:
        worker.start()
    assert finished(running, location)["status"] == "succeeded"


def test_a_job_id_too_long_or_strange_is_just_unknown(fleet: tuple[Fleet, Worker]) -> None:
    running, _ = fleet
    for job_id in ("users-" + "a" * 200, "users-%00", "nobody-1234", "-", "users-%C3%84"):
        response = running.http.get(f"/api/v2/jobs/{job_id}")
        assert response.status_code == 404, (job_id, response.text)
        assert response.headers["Content-Type"] == "application/problem+json"


def test_a_decoded_newline_in_the_path_never_splits_the_successor_link(
    fleet: tuple[Fleet, Worker],
) -> None:
    running, _ = fleet
    # v1 is deprecated: its answers link the same route in v2, built from the
    # request's path, which WSGI hands over decoded (%0A is a newline there).
    for _ in range(2):  # the first answer remembers the route's link; the second uses it
        response = running.http.get("/api/v1/jobs/users-ab%0D%0AX-Injected:%201/result")
        assert response.status_code == 404
        assert "X-Injected" not in response.headers
        link = response.headers["Link"]
        assert "</api/v2/jobs/users-ab%0D%0AX-Injected:%201/result>" in link, link
    # The connection is still usable afterwards (nothing half-sent).
    assert running.http.get("/api/v1/jobs/users-%C3%84").status_code == 404
