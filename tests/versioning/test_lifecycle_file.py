"""LOCKGATE_LIFECYCLE_FILE moves sunsets and schedules brownouts without a release."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from werkzeug.http import http_date

from tests.servers import LOCKGATE, ROOT, Fleet


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "lifecycle.toml"
    path.write_text(text)
    return str(path)


def test_a_brownout_set_by_configuration(tmp_path: Path, start_fleet: Callable[..., Fleet]) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    end = now + timedelta(hours=1)
    file = write(
        tmp_path,
        f'[users.1]\nbrownouts = [["{iso(now - timedelta(hours=1))}", "{iso(end)}"]]\n',
    )
    fleet = start_fleet({"LOCKGATE_LIFECYCLE_FILE": file})
    for response in (
        fleet.http.get("/api/v1/users"),
        fleet.http.get("/api/users", headers={"API-Version": "1"}),
    ):
        assert response.status_code == 410
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["code"] == "ApiVersionBrownout"
        retry = int(response.headers["retry-after"])
        assert 3500 < retry <= 3600
        assert response.headers["deprecation"] == "@1767225600"
    assert fleet.http.get("/api/v2/users").status_code == 200
    brownouts = {e["version"]: e for e in fleet.http.get("/api/versions").json()}["1"]["brownouts"]
    assert brownouts == [{"start": iso(now - timedelta(hours=1)), "end": iso(end)}]


def test_a_sunset_moved_into_the_past(tmp_path: Path, start_fleet: Callable[..., Fleet]) -> None:
    sunset = datetime.now(UTC).replace(microsecond=0) - timedelta(days=1)
    file = write(tmp_path, f'[users.1]\nsunset = "{iso(sunset)}"\n')
    fleet = start_fleet({"LOCKGATE_LIFECYCLE_FILE": file})
    response = fleet.http.get("/api/v1/users")
    assert response.status_code == 410
    assert response.json()["code"] == "ApiVersionSunset"
    assert response.headers["sunset"] == http_date(sunset)
    assert '</api/v2/users>; rel="successor-version"' in response.headers["link"]
    catalog = {e["version"]: e for e in fleet.http.get("/api/versions").json()}
    assert catalog["1"]["status"] == "retired"
    assert fleet.http.get("/api/users").headers["api-supported-versions"] == "2"
    assert "api-deprecated-versions" not in fleet.http.get("/api/users").headers


def test_a_sunset_moved_later(tmp_path: Path, start_fleet: Callable[..., Fleet]) -> None:
    file = write(tmp_path, '[users.1]\nsunset = "2028-01-31T12:00:00Z"\n')
    fleet = start_fleet({"LOCKGATE_LIFECYCLE_FILE": file})
    response = fleet.http.get("/api/v1/users")
    assert response.status_code == 200
    assert response.headers["sunset"] == "Mon, 31 Jan 2028 12:00:00 GMT"


@pytest.mark.parametrize(
    ("text", "table", "reason"),
    [
        ('[billing.1]\nsunset = "2030-01-01"\n', "[billing.1]", "unknown service"),
        ('[users.7]\nsunset = "2030-01-01"\n', "[users.7]", "no version"),
        ('[users.1]\nsunset = "2025-01-01"\n', "[users.1]", "precedes"),
        ('[users.1]\nretire = "2025-01-01"\n', "[users.1]", "unknown keys"),
        ('[users.2]\nsunset = "2020-01-01"\n', "[users.2]", "successor 2 is retired"),
        ('[users.1]\nbrownouts = [["2027-01-02", "2027-01-01"]]\n', "[users.1]", "end after"),
    ],
)
def test_a_broken_file_stops_the_start(tmp_path: Path, text: str, table: str, reason: str) -> None:
    env = {
        **os.environ,
        "LOCKGATE_DATA_DIR": str(tmp_path / "data"),
        "LOCKGATE_LIFECYCLE_FILE": write(tmp_path, text),
    }
    result = subprocess.run(
        [str(LOCKGATE), "run", "--port", "0"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert table in result.stderr
    assert reason in result.stderr
