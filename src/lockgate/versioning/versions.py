"""API versions as data: labels, lifecycle dates and the status derived from them.

A :class:`Version` is a small frozen value. Its status is never stored: it is
derived from its dates and a clock, so the same object answers "deprecated"
today and "retired" after its sunset without anyone mutating it.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from functools import lru_cache, total_ordering

from ..errors import ConfigurationError
from .changes import VersionChange

__all__ = ["MAX_LABEL_LENGTH", "Label", "Version", "VersionStatus", "parse_instant"]

#: The longest version label accepted, in characters as sent (surrounding
#: whitespace included). Real labels are a few characters (``1.2``,
#: ``2024-05-01``); the bound is checked before any parsing, so a client's
#: 5,000-digit label is refused as invalid instead of reaching ``int()``, whose
#: conversion limit (4,300 digits) would raise.
MAX_LABEL_LENGTH = 64

_NUMERIC = re.compile(r"[vV]?(0|[1-9]\d*)(?:\.(0|[1-9]\d*))?")
_DATE = re.compile(r"[vV]?(\d{4})-(\d{2})-(\d{2})")


@total_ordering
class Label(str):
    """A parsed version label: ``MAJOR[.MINOR]`` or an ISO date.

    ``1``, ``1.0`` and ``v1`` parse to the same label. A label *is* its
    canonical text (``1``, ``1.2``, ``2024-05-01``), as used in URLs and
    headers, so it hashes and compares for equality as fast as a string;
    ordering follows the numbers (``2 < 10``), numeric labels before dates.
    """

    __slots__ = ("is_date", "key")

    #: ``(major, minor)`` for numeric labels, ``(year, month, day)`` for dates.
    key: tuple[int, ...]
    #: ``True`` for a date label.
    is_date: bool

    def __new__(cls, text: str, key: tuple[int, ...], is_date: bool) -> Label:
        label = super().__new__(cls, text)
        label.key = key
        label.is_date = is_date
        return label

    @staticmethod
    def parse(raw: str) -> Label | None:
        """Parse ``raw`` or return ``None`` when it is not a version label.

        Anything longer than :data:`MAX_LABEL_LENGTH` is not a label.
        """
        if len(raw) > MAX_LABEL_LENGTH:
            return None
        return _parse_label(raw.strip())

    @property
    def text(self) -> str:
        """The canonical text, as a plain ``str``."""
        return str.__str__(self)

    @classmethod
    def _parse(cls, raw: str) -> Label | None:
        match = _NUMERIC.fullmatch(raw)
        if match:
            major, minor = int(match[1]), int(match[2] or 0)
            text = str(major) if minor == 0 else f"{major}.{minor}"
            return cls(text, (major, minor), False)
        match = _DATE.fullmatch(raw)
        if match:
            try:
                day = date(int(match[1]), int(match[2]), int(match[3]))
            except ValueError:
                return None
            return cls(day.isoformat(), (day.year, day.month, day.day), True)
        return None

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, Label):
            return NotImplemented
        return (self.is_date, self.key) < (other.is_date, other.key)

    __hash__ = str.__hash__
    __eq__ = str.__eq__  # canonical text is equal exactly when labels are

    def __repr__(self) -> str:
        return f"Label({str.__str__(self)!r})"


#: Clients repeat the same few spellings: parse each once (bounded, so junk cannot grow it).
_parse_label = lru_cache(maxsize=1024)(Label._parse)


class VersionStatus(enum.StrEnum):
    """Where a version stands in its lifecycle at a given instant."""

    PREVIEW = "preview"
    CURRENT = "current"
    DEPRECATED = "deprecated"
    RETIRED = "retired"


def parse_instant(value: str | datetime | date | None, *, what: str) -> datetime | None:
    """Turn an ISO 8601 string, a date or an aware datetime into an aware UTC datetime.

    A bare date means midnight UTC at the start of that day.

    :raises ConfigurationError: the value is naive or not ISO 8601.
    """
    if value is None:
        return None
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, date):
        moment = datetime.combine(value, time(0), tzinfo=UTC)
    else:
        text = value.strip()
        try:
            if len(text) == 10:
                moment = datetime.combine(date.fromisoformat(text), time(0), tzinfo=UTC)
            else:
                moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise ConfigurationError(f"{what}: {value!r} is not an ISO 8601 date") from None
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ConfigurationError(f"{what}: {value!r} has no time zone; give an aware datetime")
    return moment.astimezone(UTC)


Instant = str | datetime | date | None
Window = tuple[datetime, datetime]


@dataclass(frozen=True, init=False, slots=True)
class Version:
    """One API version and its lifecycle.

    :param label: ``MAJOR[.MINOR]`` (``"1"``, ``"1.1"``) or an ISO date.
    :param deprecated: when the version is (or will be) deprecated. A version
        with this date is announced as deprecated even before it arrives.
    :param sunset: when the version stops being served (then it answers 410).
    :param policy: a human-readable page about the deprecation.
    :param successor: the label clients should move to.
    :param brownouts: ``(start, end)`` windows during which the version
        answers 410 to make remaining clients notice.
    :param status: ``"preview"`` marks an unstable version; other statuses
        are derived from the dates.
    :param changes: the :class:`~lockgate.VersionChange` classes that lead
        from the previous version to this one, in order (versions served by
        the head's code through migrations).
    :raises ConfigurationError: a malformed label, date or window.
    """

    label: Label
    deprecated: datetime | None
    sunset: datetime | None
    policy: str | None
    successor: Label | None
    brownouts: tuple[Window, ...]
    preview: bool
    changes: tuple[type[VersionChange], ...]

    def __init__(
        self,
        label: str,
        *,
        deprecated: Instant = None,
        sunset: Instant = None,
        policy: str | None = None,
        successor: str | None = None,
        brownouts: Iterable[Sequence[Instant]] = (),
        status: str | None = None,
        changes: Iterable[type[VersionChange]] = (),
    ) -> None:
        parsed = Label.parse(str(label))
        if parsed is None:
            raise ConfigurationError(
                f"version label {label!r} is neither MAJOR[.MINOR] nor an ISO date"
            )
        name = f"version {parsed}"
        next_label = None
        if successor is not None:
            next_label = Label.parse(str(successor))
            if next_label is None:
                raise ConfigurationError(f"{name}: successor {successor!r} is not a version label")
        if status not in (None, "preview"):
            raise ConfigurationError(
                f"{name}: status may only be 'preview'; the others are derived from the dates"
            )
        windows = []
        for window in brownouts:
            if len(window) != 2:
                raise ConfigurationError(f"{name}: a brownout is a (start, end) pair")
            start = parse_instant(window[0], what=f"{name} brownout start")
            end = parse_instant(window[1], what=f"{name} brownout end")
            if start is None or end is None or not start < end:
                raise ConfigurationError(f"{name}: brownout {window!r} must end after it starts")
            windows.append((start, end))
        set_ = object.__setattr__
        set_(self, "label", parsed)
        set_(self, "deprecated", parse_instant(deprecated, what=f"{name} deprecated"))
        set_(self, "sunset", parse_instant(sunset, what=f"{name} sunset"))
        set_(self, "policy", policy)
        set_(self, "successor", next_label)
        set_(self, "brownouts", tuple(sorted(windows)))
        set_(self, "preview", status == "preview")
        chosen = tuple(changes)
        for change in chosen:
            if not (isinstance(change, type) and issubclass(change, VersionChange)):
                raise ConfigurationError(f"{name}: {change!r} is not a VersionChange subclass")
        set_(self, "changes", chosen)
        if self.deprecated and self.sunset and self.sunset < self.deprecated:
            raise ConfigurationError(f"{name}: sunset {sunset} precedes deprecation {deprecated}")
        for _start, end in self.brownouts:
            # A brownout rehearses the sunset: after it, the version is gone anyway.
            if self.sunset is not None and end > self.sunset:
                raise ConfigurationError(
                    f"{name}: brownout ending {end.isoformat()} runs past the sunset {sunset}"
                )

    def status(self, now: datetime) -> VersionStatus:
        """The status at ``now``."""
        if self.sunset is not None and now >= self.sunset:
            return VersionStatus.RETIRED
        if self.preview:
            return VersionStatus.PREVIEW
        if self.deprecated is not None:
            return VersionStatus.DEPRECATED
        return VersionStatus.CURRENT

    def brownout(self, now: datetime) -> Window | None:
        """The brownout window ``now`` falls in, if any."""
        for start, end in self.brownouts:
            if start <= now < end:
                return start, end
        return None

    def __str__(self) -> str:
        return self.label.text
