"""`lockgate keys rotate|list`: the auth service's signing keys on disk."""

from __future__ import annotations

import json
from pathlib import Path

from tests.fleet.test_cli import lockgate


def test_rotate_publishes_the_next_key_and_keeps_the_previous(tmp_path: Path) -> None:
    directory = tmp_path / "keys"
    first = lockgate(tmp_path, "keys", "rotate", "--dir", str(directory))
    assert first.returncode == 0, first.stderr
    assert "2 keys published" in first.stdout  # the signing key and the next one
    second = lockgate(tmp_path, "keys", "rotate", "--dir", str(directory))
    assert "3 keys published" in second.stdout  # the previous one stays
    listed = lockgate(tmp_path, "keys", "list", "--dir", str(directory)).stdout.splitlines()
    states = [line.split()[1] for line in listed]
    assert states == ["retired", "signing", "next"]
    assert all(line.endswith(" published") for line in listed)
    for pem in directory.glob("*.pem"):
        assert pem.stat().st_mode & 0o777 == 0o600
    assert directory.stat().st_mode & 0o777 == 0o700
    index = json.loads((directory / "keys.json").read_text())
    assert len(index) == 3


def test_the_keys_directory_comes_from_the_environment(tmp_path: Path) -> None:
    directory = tmp_path / "from-env"
    result = lockgate(tmp_path, "keys", "rotate", env={"LOCKGATE_AUTH_KEYS_DIR": str(directory)})
    assert result.returncode == 0, result.stderr
    assert len(list(directory.glob("*.pem"))) == 2
