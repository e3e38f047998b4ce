"""The ordered set of versions an application serves, and what holds at an instant.

Statuses change only at the instants written in the versions (deprecation,
sunset, brownout edges), so a :class:`Snapshot` is computed once and reused
until the next such instant: the hot path reads a few attributes.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ..errors import ConfigurationError
from .versions import Label, Version, VersionStatus

__all__ = ["Snapshot", "VersionBundle"]

CURRENT = "current"


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The lifecycle of every version, valid from ``since`` until ``until``."""

    since: datetime
    until: datetime | None
    statuses: dict[Label, VersionStatus]
    #: Value of ``API-Supported-Versions``: served, not deprecated.
    supported_header: str
    #: Value of ``API-Deprecated-Versions``: served and deprecated.
    deprecated_header: str
    #: The version served when the request names none, or ``None`` (strict).
    default: Version | None
    #: Versions refused throughout the snapshot: retired, or inside a brownout
    #: (a brownout's edges are snapshot edges, so this holds until ``until``).
    refused: frozenset[Label] = frozenset()
    #: Caches valid for this lifecycle period only. Kept here rather than beside
    #: a "current snapshot" marker so that a thread still holding the previous
    #: snapshot cannot write into the new period's caches.
    #: Reader inputs -> negotiation outcome, a ``state.Decision`` (see the dispatcher).
    decisions: dict[tuple[str | None, ...], Any] = field(
        default_factory=dict, compare=False, repr=False
    )
    #: Version label (``None``: refused before one was chosen) -> fixed headers.
    header_blocks: dict[Label | None, tuple[tuple[str, str], ...]] = field(
        default_factory=dict, compare=False, repr=False
    )

    def valid_at(self, now: datetime) -> bool:
        return self.since <= now and (self.until is None or now < self.until)


class VersionBundle:
    """An ordered, validated collection of :class:`Version`.

    :param versions: the versions, in any order; they are sorted ascending.
    :param default: ``"current"`` (the newest served non-preview version),
        a label, or ``None`` for strict mode.
    :raises ConfigurationError: repeated labels, an unknown or retired
        successor, a preview or retired default, an unknown default.
    """

    def __init__(self, versions: Iterable[Version], default: str | None, now: datetime) -> None:
        self.versions: tuple[Version, ...] = tuple(sorted(versions, key=lambda v: v.label))
        if not self.versions:
            raise ConfigurationError("at least one version is required")
        self.by_label: dict[Label, Version] = {}
        for version in self.versions:
            if version.label in self.by_label:
                raise ConfigurationError(f"version {version.label} is declared twice")
            self.by_label[version.label] = version
        self.default_spec = default
        self._default_label: Label | None = None
        if default not in (None, CURRENT):
            label = Label.parse(str(default))
            if label is None or label not in self.by_label:
                raise ConfigurationError(f"default version {default!r} is not a declared version")
            self._default_label = label
        #: The snapshot computed last: the dispatcher checks it is still valid
        #: (:meth:`Snapshot.valid_at`) before asking :meth:`snapshot`.
        self.last: Snapshot = self._compute(now)
        self.validate(now)

    def validate(self, now: datetime) -> None:
        """Check the rules that depend on the clock (run at start)."""
        for version in self.versions:
            if version.successor is None:
                continue
            successor = self.by_label.get(version.successor)
            if successor is None:
                raise ConfigurationError(
                    f"version {version.label}: successor {version.successor} is not declared"
                )
            if successor is version:
                raise ConfigurationError(f"version {version.label} cannot succeed itself")
            if successor.sunset is not None and (
                version.sunset is None or successor.sunset < version.sunset
            ):
                raise ConfigurationError(
                    f"version {version.label}: successor {successor.label} is retired "
                    f"before it (sunset {successor.sunset.isoformat()}); clients would be "
                    "sent to a version that is gone"
                )
            if successor.status(now) is VersionStatus.RETIRED:
                raise ConfigurationError(
                    f"version {version.label}: successor {successor.label} is retired"
                )
        if self._default_label is not None:
            status = self.by_label[self._default_label].status(now)
            if status in (VersionStatus.PREVIEW, VersionStatus.RETIRED):
                raise ConfigurationError(
                    f"default version {self._default_label} is {status}; "
                    "the default must be a served, stable version"
                )
        elif self.default_spec == CURRENT and self.snapshot(now).default is None:
            raise ConfigurationError("default='current' but no stable version is served")

    def get(self, label: Label) -> Version | None:
        return self.by_label.get(label)

    def snapshot(self, now: datetime) -> Snapshot:
        """The lifecycle at ``now`` (cached until the next lifecycle instant)."""
        snap = self.last
        if snap.since <= now and (snap.until is None or now < snap.until):
            return snap
        snap = self.last = self._compute(now)
        return snap

    def _compute(self, now: datetime) -> Snapshot:
        statuses = {v.label: v.status(now) for v in self.versions}
        edges = [
            moment
            for v in self.versions
            for moment in (v.deprecated, v.sunset, *[edge for w in v.brownouts for edge in w])
            if moment is not None
        ]
        since = max((m for m in edges if m <= now), default=datetime.min.replace(tzinfo=now.tzinfo))
        until = min((m for m in edges if m > now), default=None)
        supported = [
            v.label.text
            for v in self.versions
            if statuses[v.label] in (VersionStatus.CURRENT, VersionStatus.PREVIEW)
        ]
        deprecated = [
            v.label.text for v in self.versions if statuses[v.label] is VersionStatus.DEPRECATED
        ]
        default: Version | None = None
        if self._default_label is not None:
            default = self.by_label[self._default_label]
            if statuses[default.label] is VersionStatus.RETIRED:
                default = None
        elif self.default_spec == CURRENT:
            stable = (VersionStatus.CURRENT, VersionStatus.DEPRECATED)
            served = [v for v in self.versions if statuses[v.label] in stable]
            default = served[-1] if served else None
        return Snapshot(
            since=since,
            until=until,
            statuses=statuses,
            supported_header=", ".join(supported),
            deprecated_header=", ".join(deprecated),
            default=default,
            refused=frozenset(
                v.label
                for v in self.versions
                if statuses[v.label] is VersionStatus.RETIRED or v.brownout(now) is not None
            ),
        )
