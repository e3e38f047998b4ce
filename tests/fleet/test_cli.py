"""The `lockgate` command: versions, openapi, db upgrade, usage, and a missing extra."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from openapi_spec_validator import validate

from tests.servers import LOCKGATE, ROOT, Fleet, token_for


def lockgate(
    tmp_path: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "LOCKGATE_DATA_DIR": str(tmp_path / "data")}
    environment.pop("COLUMNS", None)  # a pipe: tables must not fold at rich's default 80
    return subprocess.run(
        [str(LOCKGATE), *args],
        cwd=ROOT,
        env={**environment, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_versions_table(tmp_path: Path) -> None:
    every = lockgate(tmp_path, "versions")
    assert every.returncode == 0, every.stderr
    assert "users" in every.stdout and "orders" in every.stdout  # auth has no versions
    result = lockgate(tmp_path, "versions", "--service", "users")
    assert result.returncode == 0, result.stderr
    rows = [line for line in result.stdout.splitlines() if "│" in line]
    cells = [[cell.strip() for cell in row.split("│")[1:-1]] for row in rows]
    by_version = {row[0]: row for row in cells if row and row[0] in {"0", "1", "2"}}
    assert by_version["0"][1] == "retired"
    assert by_version["1"][1] == "deprecated"
    assert by_version["1"][3] == "2027-06-30T23:59:59Z"
    assert by_version["2"][1] == "current"
    assert by_version["1"][5] == "/docs/migrations/v1-to-v2"
    assert by_version["1"][6] == "/api/v1/openapi.json"


def test_commands_refuse_a_lifecycle_file_naming_an_unknown_service(tmp_path: Path) -> None:
    lifecycle = tmp_path / "lifecycle.toml"
    lifecycle.write_text('[billing.1]\nsunset = "2030-01-01T00:00:00Z"\n')
    for command in (("versions",), ("openapi", "--service", "users", "--version", "1")):
        result = lockgate(tmp_path, *command, env={"LOCKGATE_LIFECYCLE_FILE": str(lifecycle)})
        assert result.returncode != 0
        assert "[billing.1]" in result.stderr
        assert "unknown service 'billing'" in result.stderr


def test_openapi_of_one_version(tmp_path: Path) -> None:
    result = lockgate(tmp_path, "openapi", "--service", "users", "--version", "1")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    validate(document)
    assert document["info"]["version"] == "1"
    assert all(op["deprecated"] for item in document["paths"].values() for op in item.values())
    bad = lockgate(tmp_path, "openapi", "--service", "users", "--version", "9")
    assert bad.returncode != 0
    assert "not a declared version" in bad.stderr
    unknown = lockgate(tmp_path, "openapi", "--service", "nope", "--version", "1")
    assert unknown.returncode != 0
    assert "no service 'nope'" in unknown.stderr


def test_db_upgrade_creates_the_schema(tmp_path: Path) -> None:
    result = lockgate(tmp_path, "db", "upgrade")
    assert result.returncode == 0, result.stderr
    with sqlite3.connect(tmp_path / "data" / "users.db") as connection:
        tables = {row[0] for row in connection.execute("select name from sqlite_master")}
        revision = connection.execute("select version_num from alembic_version").fetchone()
    connection.close()
    assert {"users", "users_jobs", "users_job_outbox"} <= tables
    assert revision == ("0002",)
    again = lockgate(tmp_path, "db", "upgrade")
    assert again.returncode == 0, again.stderr


def test_usage_reports_clients_of_deprecated_versions(
    tmp_path: Path, start_fleet: Callable[..., Fleet]
) -> None:
    fleet = start_fleet()
    billing = fleet.create_client("legacy-billing", "users:read")
    billing_token = token_for(fleet.base, *billing)
    # Counted by the token's client id; without a token, by the address.
    for headers, calls in (
        ({"Authorization": f"Bearer {billing_token}"}, 3),
        ({}, 1),
        ({"Authorization": ""}, 1),
    ):
        for _ in range(calls):
            fleet.http.get("/api/v1/users", headers=headers)
    fleet.http.get("/api/v2/users", headers={"User-Agent": "modern/1"})
    refused = lockgate(tmp_path, "usage", "--url", fleet.base)
    assert refused.returncode != 0 and "--token" in refused.stderr
    reader = lockgate(tmp_path, "usage", "--url", fleet.base, "--token", fleet.token("users:read"))
    assert reader.returncode != 0 and "403" in reader.stderr
    result = lockgate(tmp_path, "usage", "--url", fleet.base, "--token", fleet.token("ops:read"))
    assert result.returncode == 0, result.stderr
    rows = [
        [cell.strip() for cell in line.split("│")[1:-1]]
        for line in result.stdout.splitlines()
        if "│" in line
    ]
    body = {(row[0], row[1], row[2]): int(row[3]) for row in rows if row and row[0] == "users"}
    assert body == {
        ("users", "1", billing[0]): 3,
        ("users", "1", fleet.client_id): 1,
        ("users", "1", "127.0.0.1"): 1,
    }
    down = lockgate(tmp_path, "usage", "--url", "http://127.0.0.1:9")
    assert down.returncode != 0
    assert "cannot read" in down.stderr


#: Run the CLI with imports of some top-level packages failing, as on an install
#: without their extra: a meta path finder in front of every other refuses them.
WITHOUT = """
import sys

class Missing:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in {blocked!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        return None

sys.meta_path.insert(0, Missing())
from lockgate.fleet.cli import main
main({args!r}, prog_name="lockgate")
"""


def lockgate_without(
    tmp_path: Path, blocked: set[str], *args: str
) -> subprocess.CompletedProcess[str]:
    code = WITHOUT.format(blocked=sorted(blocked), args=list(args))
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={**os.environ, "LOCKGATE_DATA_DIR": str(tmp_path / "data")},
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("blocked", "args", "message"),
    [
        (
            "sqlalchemy",
            ["db", "upgrade"],
            "lockgate db upgrade needs the db extra: pip install 'lockgate[db]'",
        ),
        (
            "sqlalchemy",
            ["run", "--port", "9"],
            "lockgate run needs the db extra: pip install 'lockgate[db]'",
        ),
        ("alembic", ["serve"], "lockgate serve needs the db extra: pip install 'lockgate[db]'"),
        (
            "redis",
            ["versions"],
            "lockgate versions needs the runtime extra: pip install 'lockgate[runtime]'",
        ),
        (
            "gunicorn",
            ["serve"],
            "lockgate serve needs the server extra: pip install 'lockgate[server]'",
        ),
        (
            "granian",
            ["serve", "--server", "granian"],
            "lockgate serve needs the server extra: pip install 'lockgate[server]'",
        ),
    ],
)
def test_a_missing_extra_is_one_line_naming_it(
    tmp_path: Path, blocked: str, args: list[str], message: str
) -> None:
    result = lockgate_without(tmp_path, {blocked}, *args)
    assert result.returncode == 1, result.stderr
    assert result.stderr.strip().splitlines()[-1] == f"Error: {message}"
    assert "Traceback" not in result.stderr


def test_help_needs_no_extra(tmp_path: Path) -> None:
    """`lockgate --help` on a core install: every optional package refused."""
    from lockgate.fleet.cli import EXTRAS

    result = lockgate_without(tmp_path, set(EXTRAS), "--help")
    assert result.returncode == 0, result.stderr
    for command in ("run", "serve", "versions", "openapi", "db", "usage"):
        assert command in result.stdout


def test_uwsgi_is_a_server_choice(tmp_path: Path) -> None:
    result = lockgate(tmp_path, "serve", "--help")
    assert result.returncode == 0, result.stderr
    assert "gunicorn|granian|uwsgi" in result.stdout
