"""Users export: 202 and a job, a result that links a streamed file, 100,000 users
in bounded memory.

The fleet of `make run` (its embedded broker: kombu's SQLAlchemy transport on
SQLite, and a real `lockgate worker` process), except that the test starts
the worker itself, so it can read the worker's memory.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.jobs.fleet import Worker, add_users, jobs_fleet
from tests.jobs.fleet import finished as finished_job
from tests.servers import Fleet

pytestmark = pytest.mark.server

FIELDS = ["id", "first_name", "last_name", "email", "created_at"]


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Fleet, Worker]]:
    tmp = tmp_path_factory.mktemp("exports")
    # No broker URL: the embedded default, as `make run` has it.
    with jobs_fleet(tmp, "", start_worker=False) as (running, worker):
        worker.pool = "solo"  # one process: its memory is the export's
        worker.start()
        yield running, worker


def finished(fleet: Fleet, location: str) -> dict[str, Any]:
    return finished_job(fleet.http, location, 120)


def test_an_export_is_accepted_with_202_a_location_and_retry_after(
    fleet: tuple[Fleet, Worker],
) -> None:
    running, _ = fleet
    response = running.http.post("/api/v2/users/exports", json={"format": "csv"})
    assert response.status_code == 202, response.text
    location = response.headers["Location"]
    body = response.json()
    assert location == f"/api/v2/jobs/{body['id']}"
    assert int(response.headers["Retry-After"]) >= 1
    assert set(body) == {
        "id", "type", "status", "progress", "created_at", "started_at", "finished_at",
        "result", "error",
    }  # fmt: skip
    assert body["type"] == "users.export"
    assert body["status"] == "queued"
    assert body["progress"] == 0
    assert body["result"] is None
    assert body["error"] is None

    state = finished(running, location)
    assert state["status"] == "succeeded", state
    assert state["progress"] == 1
    assert state["started_at"] <= state["finished_at"]
    result = state["result"]
    assert set(result) == {"href", "format", "rows"}
    assert result["format"] == "csv"
    shown = running.http.get(location)
    assert shown.headers["Link"] == f'<{result["href"]}>; rel="https://lockgate.dev/rels/result"'
    assert "Retry-After" not in shown.headers

    download = running.http.get(result["href"])
    assert download.status_code == 200
    assert download.headers["Content-Type"].startswith("text/csv")
    assert "attachment" in download.headers["Content-Disposition"]
    rows = list(csv.reader(io.StringIO(download.text)))
    assert rows[0] == FIELDS
    assert len(rows) - 1 == result["rows"]


def test_a_jsonl_export_has_one_v2_user_per_line(fleet: tuple[Fleet, Worker]) -> None:
    running, _ = fleet
    made = running.http.post(
        "/api/v2/users",
        json={"first_name": "Lin", "last_name": "Export", "email": "lin-export@example.com"},
    )
    assert made.status_code == 201
    location = running.http.post("/api/v2/users/exports", json={"format": "jsonl"}).headers[
        "Location"
    ]
    state = finished(running, location)
    download = running.http.get(state["result"]["href"])
    assert download.headers["Content-Type"].startswith("application/jsonl")
    users = [json.loads(line) for line in download.text.splitlines()]
    assert len(users) == state["result"]["rows"]
    assert made.json() in users
    assert all(set(user) == set(FIELDS) for user in users)


@pytest.mark.parametrize(
    "body",
    [{}, {"format": "xml"}, {"format": "csv", "extra": 1}, {"format": ["csv"]}],
    ids=["missing", "unknown", "extra", "list"],
)
def test_a_bad_export_request_is_a_problem_and_starts_nothing(
    fleet: tuple[Fleet, Worker], body: dict[str, Any]
) -> None:
    running, _ = fleet
    response = running.http.post("/api/v2/users/exports", json=body)
    assert response.status_code in (400, 422), response.text
    assert response.headers["Content-Type"] == "application/problem+json"
    assert "Location" not in response.headers


def test_an_export_needs_users_read(fleet: tuple[Fleet, Worker]) -> None:
    running, _ = fleet
    anonymous = running.anonymous.post("/api/v2/users/exports", json={"format": "csv"})
    assert anonymous.status_code == 401
    token = running.token("orders:read orders:write")
    forbidden = running.anonymous.post(
        "/api/v2/users/exports",
        json={"format": "csv"},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert forbidden.status_code == 403
    assert forbidden.json()["code"] == "insufficient_scope"


def test_100000_users_export_in_bounded_memory_and_stream_down(
    fleet: tuple[Fleet, Worker],
) -> None:
    running, worker = fleet
    data = Path(running.env["LOCKGATE_DATA_DIR"])
    # The worker has run exports of the few users the tests above made (its
    # imports and pools are warm): its peak so far is its baseline.
    before = worker.peak_memory_kb()
    add_users(data, 100_000)
    state = finished(running, running.http.post(
        "/api/v2/users/exports", json={"format": "jsonl"}).headers["Location"])  # fmt: skip
    assert state["status"] == "succeeded", state
    grown_mb = (worker.peak_memory_kb() - before) / 1024
    assert state["result"]["rows"] >= 100_000
    # 100,000 users held at once would be well over 100 MB in Python objects.
    assert grown_mb < 20, f"the worker grew {grown_mb:.1f} MB for one export"
    lines = 0
    with running.http.stream("GET", state["result"]["href"]) as download:
        assert download.status_code == 200
        for line in download.iter_lines():
            if line:
                lines += 1
    assert lines == state["result"]["rows"]
