"""`lockgate openapi --out` and `lockgate diff`: no commit may break a released version."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from tests.fleet.test_cli import lockgate
from tests.servers import ROOT

SNAPSHOTS = ROOT / "openapi"


def _copy(tmp_path: Path) -> Path:
    target = tmp_path / "openapi"
    shutil.copytree(SNAPSHOTS, target)
    return target


def _edit(path: Path, change: Any) -> None:
    document = json.loads(path.read_text())
    change(document)
    path.write_text(json.dumps(document, indent=2))


def test_every_released_version_matches_its_snapshot(tmp_path: Path) -> None:
    result = lockgate(tmp_path, "diff", "--all")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "users v1" in result.stdout and "users v2" in result.stdout
    assert "users v0" not in result.stdout  # retired: no longer released


def test_the_guard_fails_on_a_broken_snapshot(tmp_path: Path) -> None:
    """A snapshot that promises a field the code no longer serves: as if a
    commit had removed it from v2's user."""
    snapshots = _copy(tmp_path)

    def promise_nickname(document: dict[str, Any]) -> None:
        user = document["components"]["schemas"]["UserV2"]
        user["properties"]["nickname"] = {"type": "string"}
        user.setdefault("required", []).append("nickname")

    _edit(snapshots / "users-v2.json", promise_nickname)
    result = lockgate(tmp_path, "diff", "--all", "--snapshots", str(snapshots))
    assert result.returncode == 1, result.stdout + result.stderr
    breaking = [line for line in result.stdout.splitlines() if line.startswith("BREAKING")]
    assert breaking
    assert any("GET /api/v2/users/{user_id}" in line and "nickname" in line for line in breaking)
    assert any("GET /api/v2/users" in line and "data[].nickname" in line for line in breaking)
    assert "users v1" in result.stdout  # v1 was still checked, and passed


def test_one_service_and_version_against_its_snapshot(tmp_path: Path) -> None:
    snapshots = _copy(tmp_path)

    def drop_operation(document: dict[str, Any]) -> None:
        del document["paths"]["/api/v1/users/{user_id}"]["delete"]

    _edit(snapshots / "users-v1.json", drop_operation)
    # The code serves an operation the snapshot lacks: compatible (added).
    result = lockgate(
        tmp_path, "diff", "--service", "users", "--version", "1", "--snapshots", str(snapshots)
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "compatible" in result.stdout and "DELETE /api/v1/users/{user_id}" in result.stdout


def test_two_files(tmp_path: Path) -> None:
    old = SNAPSHOTS / "users-v2.json"
    new = tmp_path / "new.json"
    shutil.copy(old, new)

    def remove_list(document: dict[str, Any]) -> None:
        del document["paths"]["/api/v2/users"]["get"]

    _edit(new, remove_list)
    result = lockgate(tmp_path, "diff", str(old), str(new))
    assert result.returncode == 1
    assert "BREAKING" in result.stdout and "GET /api/v2/users" in result.stdout
    same = lockgate(tmp_path, "diff", str(old), str(old))
    assert same.returncode == 0 and "no differences" in same.stdout


def test_a_released_version_without_a_snapshot_fails(tmp_path: Path) -> None:
    snapshots = _copy(tmp_path)
    (snapshots / "users-v1.json").unlink()
    result = lockgate(tmp_path, "diff", "--all", "--snapshots", str(snapshots))
    assert result.returncode == 1
    assert "users v1 is released but has no snapshot" in result.stderr
    assert "lockgate openapi --service users --version 1 --out" in result.stderr


def test_bad_usage_is_exit_2(tmp_path: Path) -> None:
    assert lockgate(tmp_path, "diff").returncode == 2
    assert lockgate(tmp_path, "diff", "--version", "1").returncode == 2
    junk = tmp_path / "junk.json"
    junk.write_text("[1, 2")
    result = lockgate(tmp_path, "diff", str(junk), str(junk))
    assert result.returncode == 2 and "junk.json" in result.stderr
    dangling = tmp_path / "dangling.json"
    dangling.write_text(
        json.dumps(
            {
                "openapi": "3.1.0",
                "paths": {
                    "/a": {
                        "get": {
                            "responses": {
                                "200": {
                                    "description": "x",
                                    "content": {
                                        "application/json": {
                                            "schema": {"$ref": "#/components/schemas/Nowhere"}
                                        }
                                    },
                                }
                            }
                        }
                    }
                },
            }
        )
    )
    result = lockgate(tmp_path, "diff", str(dangling), str(dangling))
    assert result.returncode == 2, result.stdout + result.stderr  # not "breaking" (1)


def test_openapi_out_writes_the_snapshot_the_guard_reads(tmp_path: Path) -> None:
    out = tmp_path / "snap" / "users-v2.json"
    result = lockgate(
        tmp_path, "openapi", "--service", "users", "--version", "2", "--out", str(out)
    )
    assert result.returncode == 0, result.stderr
    assert (
        json.loads(out.read_text())["paths"]
        == json.loads((SNAPSHOTS / "users-v2.json").read_text())["paths"]
    )
