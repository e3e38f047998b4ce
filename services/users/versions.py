"""The users API's versions and their default lifecycle.

An operator moves these dates with ``LOCKGATE_LIFECYCLE_FILE`` (table
``[users.<version>]``) without a release; ``Versioning.init_app`` applies it.
"""

from __future__ import annotations

from lockgate import Version

GUIDE_PATH = "/docs/migrations/v1-to-v2"


def users_versions(public_url: str = "") -> list[Version]:
    """v0 retired, v1 deprecated with v2 as successor, v2 current."""
    return [
        Version("0", sunset="2025-06-30", successor="2"),
        Version(
            "1",
            deprecated="2026-01-01",
            sunset="2027-06-30T23:59:59Z",
            successor="2",
            policy=f"{public_url.rstrip('/')}{GUIDE_PATH}",
        ),
        Version("2"),
    ]
