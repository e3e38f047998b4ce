"""The user, as every version of the API shares it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime


@dataclass(frozen=True)
class User:
    id: int
    first_name: str
    last_name: str
    email: str
    created_at: datetime

    @property
    def name(self) -> str:
        """The v1 view: first and last name joined by a space (just the first
        name when there is no last name)."""
        return f"{self.first_name} {self.last_name}" if self.last_name else self.first_name


def split_name(name: str) -> tuple[str, str]:
    """v1's ``name`` split at its first space into first and last name, as
    given: ``"Ada  Lovelace"`` reads back unchanged."""
    first, _, last = name.partition(" ")
    return first, last


def rfc3339(moment: datetime) -> str:
    """``2026-11-25T04:27:29Z``."""
    if moment.tzinfo is None:  # SQLite hands back naive UTC
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


class DuplicateEmail(Exception):
    """Another user already has this email (compared case-insensitively)."""
