"""`lockgate clients create|list|revoke`: the auth service's clients, through the manifest."""

from __future__ import annotations

import json
import re
import sqlite3
from pathlib import Path

import pytest

from services.auth import create_app
from tests.fleet.test_cli import lockgate


def created(tmp_path: Path, name: str, scopes: str) -> dict[str, str]:
    result = lockgate(tmp_path, "clients", "create", name, "--scopes", scopes)
    assert result.returncode == 0, result.stderr
    assert "never shown again" in result.stderr
    found = dict(re.findall(r"^(client_id|client_secret|scopes): (.+)$", result.stdout, re.M))
    assert set(found) == {"client_id", "client_secret", "scopes"}, result.stdout
    return found


def authenticated(tmp_path: Path, client_id: str, secret: str) -> bool:
    """Whether the auth service itself would issue a token for these credentials."""
    app = create_app({"DATABASE_URL": f"sqlite:///{tmp_path / 'data' / 'auth.db'}"})
    return app.extensions["lockgate.auth.clients"].authenticate(client_id, secret) is not None


def test_create_prints_the_secret_once_and_stores_only_its_hash(tmp_path: Path) -> None:
    made = created(tmp_path, "billing", "users:read,users:write")
    assert made["scopes"] == "users:read users:write"
    assert authenticated(tmp_path, made["client_id"], made["client_secret"])
    assert not authenticated(tmp_path, made["client_id"], made["client_secret"] + "x")
    with sqlite3.connect(tmp_path / "data" / "auth.db") as db:
        (stored,) = db.execute(
            "select secret_hash from clients where id = ?", (made["client_id"],)
        ).fetchone()
    assert stored.startswith("scrypt$") and made["client_secret"] not in stored
    listed = lockgate(tmp_path, "clients", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    assert made["client_secret"] not in listed.stdout
    (row,) = json.loads(listed.stdout)
    assert row["client_id"] == made["client_id"] and row["name"] == "billing"
    assert row["scopes"] == ["users:read", "users:write"] and row["revoked_at"] is None
    table = lockgate(tmp_path, "clients", "list").stdout
    assert made["client_id"] in table and made["client_secret"] not in table


def test_a_revoked_client_is_listed_as_revoked_and_authenticates_no_more(tmp_path: Path) -> None:
    made = created(tmp_path, "old", "users:read")
    revoked = lockgate(tmp_path, "clients", "revoke", made["client_id"])
    assert revoked.returncode == 0, revoked.stderr
    assert not authenticated(tmp_path, made["client_id"], made["client_secret"])
    (row,) = json.loads(lockgate(tmp_path, "clients", "list", "--json").stdout)
    assert row["revoked_at"] is not None
    unknown = lockgate(tmp_path, "clients", "revoke", "cl_nobody")
    assert unknown.returncode == 1 and "no client 'cl_nobody'" in unknown.stderr


@pytest.mark.parametrize("scopes", ["users:read,users:admin", ",", "everything"])
def test_unknown_scopes_are_refused_naming_them(tmp_path: Path, scopes: str) -> None:
    result = lockgate(tmp_path, "clients", "create", "x", "--scopes", scopes)
    assert result.returncode == 2, result.stdout
    assert "--scopes" in result.stderr and "known: ops:read" in result.stderr
    assert json.loads(lockgate(tmp_path, "clients", "list", "--json").stdout) == []


def test_create_json_is_one_object(tmp_path: Path) -> None:
    result = lockgate(tmp_path, "clients", "create", "ci", "--scopes", "ops:read", "--json")
    assert result.returncode == 0, result.stderr
    made = json.loads(result.stdout)
    assert set(made) == {"client_id", "client_secret", "name", "scopes"}
    assert authenticated(tmp_path, made["client_id"], made["client_secret"])


def test_a_fleet_without_an_auth_service_says_so(tmp_path: Path) -> None:
    manifest = tmp_path / "fleet.toml"
    manifest.write_text('[services.users]\napp = "services.users:create_app"\npaths = ["/users"]\n')
    result = lockgate(tmp_path, "clients", "list", "--manifest", str(manifest))
    assert result.returncode == 1 and "has no auth service" in result.stderr
