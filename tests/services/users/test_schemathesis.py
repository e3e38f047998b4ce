"""Schemathesis against every served version of the real fleet, bounded in time.

Every check (no 5xx, statuses, content types, headers and bodies conforming to
the document, schema-valid input accepted and invalid input refused, stateful
links between the operations), a fixed seed, and a time budget per run: four
runs (v1 and v2, on SQLite and on PostgreSQL) of ``MAX_TIME`` seconds each.
The CLI is run as a subprocess: it is schemathesis's one interface that runs
every phase (coverage, fuzzing, stateful) and every check in one call.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.servers import Fleet, schemathesis

SEED = 20261201
#: Seconds per run; fuzzing and stateful testing repeat until it is spent.
MAX_TIME = 12
#: The versions the fleet serves (v0 is retired: its document has no live routes).
VERSIONS = ("1", "2")


@pytest.mark.parametrize("version", VERSIONS)
def test_schemathesis_finds_nothing(fleet: Fleet, version: str, tmp_path: Path) -> None:
    output = schemathesis(
        f"{fleet.base}/api/v{version}/openapi.json",
        seed=SEED,
        max_time=MAX_TIME,
        cwd=tmp_path,
        token=fleet.token(),
        missing_data=True,  # job ids it makes up name no job
    )
    # The five user routes, the three of a job, and v2's export.
    assert f"Tested: {9 if version == '2' else 8}" in output, output[-5000:]


@pytest.mark.parametrize("version", VERSIONS)
def test_schemathesis_finds_nothing_in_orders(fleet: Fleet, version: str, tmp_path: Path) -> None:
    """Orders' documents, where the fleet mounts the service whole; its calls
    to users (a user that exists or not) included."""
    output = schemathesis(
        f"{fleet.base}/services/orders/api/v{version}/openapi.json",
        seed=SEED,
        max_time=MAX_TIME,
        cwd=tmp_path,
        token=fleet.token(),
        missing_data=True,
    )
    # v2: create, list, show, cancel; v1 has no cancel; both: a job's three.
    assert f"Tested: {7 if version == '2' else 6}" in output, output[-5000:]
