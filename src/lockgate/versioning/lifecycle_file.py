"""``LOCKGATE_LIFECYCLE_FILE``: move a sunset or schedule a brownout without a release.

One table per service and version; each may set ``deprecated``, ``sunset``
and ``brownouts``::

    [users.1]
    deprecated = "2026-01-01"
    sunset = "2027-06-30T23:59:59Z"
    brownouts = [["2027-03-01T00:00:00Z", "2027-03-01T02:00:00Z"]]

A table naming an unknown service or version, or breaking a lifecycle rule,
stops the start with a message that names the table.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..errors import ConfigurationError
from .bundle import VersionBundle
from .versions import Label, Version

__all__ = ["LIFECYCLE_ENV", "apply_lifecycle_file", "check_services", "read_lifecycle_file"]

LIFECYCLE_ENV = "LOCKGATE_LIFECYCLE_FILE"
_KEYS = {"deprecated", "sunset", "brownouts"}

Overrides = dict[str, dict[str, dict[str, Any]]]


def _path(path: str | os.PathLike[str] | None) -> Path | None:
    chosen = path or os.environ.get(LIFECYCLE_ENV)
    return Path(chosen) if chosen else None


def read_lifecycle_file(path: str | os.PathLike[str] | None = None) -> tuple[str, Overrides]:
    """The overrides by service and version label, and the file's name for messages.

    :raises ConfigurationError: unreadable TOML, a key other than the three
        allowed, or a table that is not ``[service.version]``.
    """
    chosen = _path(path)
    if chosen is None:
        return "", {}
    try:
        data = tomllib.loads(chosen.read_text())
    except FileNotFoundError:
        raise ConfigurationError(f"{LIFECYCLE_ENV}: {chosen} does not exist") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigurationError(f"{chosen}: {error}") from None
    overrides: Overrides = {}
    for service, versions in data.items():
        if not isinstance(versions, dict) or not all(
            isinstance(v, dict) for v in versions.values()
        ):
            raise ConfigurationError(
                f"{chosen}: [{service}] must hold [{service}.<version>] tables"
            )
        for label, table in versions.items():
            unknown = set(table) - _KEYS
            if unknown:
                raise ConfigurationError(
                    f"{chosen} [{service}.{label}]: unknown keys {', '.join(sorted(unknown))}; "
                    f"allowed: {', '.join(sorted(_KEYS))}"
                )
        overrides[service] = versions
    return str(chosen), overrides


def check_services(names: Iterable[str], path: str | os.PathLike[str] | None = None) -> None:
    """Refuse a lifecycle file that names a service the fleet does not have."""
    source, overrides = read_lifecycle_file(path)
    known = set(names)
    for service, versions in overrides.items():
        if service not in known:
            label = next(iter(versions), "")
            raise ConfigurationError(
                f"{source} [{service}.{label}]: unknown service {service!r} "
                f"(the fleet has {', '.join(sorted(known))})"
            )


def apply_lifecycle_file(
    service: str,
    versions: Sequence[Version],
    *,
    default: str | None = "current",
    path: str | os.PathLike[str] | None = None,
    now: datetime | None = None,
) -> list[Version]:
    """``versions`` with the file's dates for ``service`` applied.

    :raises ConfigurationError: naming the offending ``[service.version]`` table.
    """
    source, overrides = read_lifecycle_file(path)
    tables = overrides.get(service, {})
    by_label = {version.label: version for version in versions}
    result = {version.label: version for version in versions}
    for raw, table in tables.items():
        where = f"{source} [{service}.{raw}]"
        label = Label.parse(str(raw))
        if label is None or label not in by_label:
            known = ", ".join(v.label.text for v in versions)
            raise ConfigurationError(f"{where}: {service} has no version {raw!r} (it has {known})")
        old = by_label[label]
        try:
            result[label] = Version(
                old.label.text,
                deprecated=table.get("deprecated", old.deprecated),
                sunset=table.get("sunset", old.sunset),
                brownouts=table.get("brownouts", old.brownouts),
                policy=old.policy,
                successor=None if old.successor is None else old.successor.text,
                status="preview" if old.preview else None,
                changes=old.changes,
            )
        except (ConfigurationError, TypeError) as error:
            raise ConfigurationError(f"{where}: {error}") from None
    chosen = list(result.values())
    if tables:
        try:
            VersionBundle(chosen, default, now or datetime.now(UTC))
        except ConfigurationError as error:
            names = ", ".join(f"[{service}.{raw}]" for raw in tables)
            raise ConfigurationError(f"{source} {names}: {error}") from None
    return chosen
