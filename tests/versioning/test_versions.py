"""Version labels, dates and derived status."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from lockgate import ConfigurationError, Version, VersionStatus
from lockgate.versioning.versions import Label


@pytest.mark.parametrize(
    ("raw", "text"),
    [
        ("1", "1"),
        ("1.0", "1"),
        ("v1", "1"),
        ("V1.0", "1"),
        ("1.2", "1.2"),
        ("2024-05-01", "2024-05-01"),
    ],
)
def test_labels(raw: str, text: str) -> None:
    label = Label.parse(raw)
    assert label is not None
    assert label.text == text


@pytest.mark.parametrize("raw", ["banana", "", "1.2.3", "01", "2024-13-01", "-1", "1.", "v"])
def test_malformed_labels(raw: str) -> None:
    assert Label.parse(raw) is None


def test_label_equality_and_order() -> None:
    one, one_zero, two, ten = (Label.parse(x) for x in ("1", "1.0", "2", "10"))
    assert one == one_zero
    assert one is not None
    assert two is not None
    assert ten is not None
    assert one < two < ten
    assert sorted([ten, one, two]) == [one, two, ten]


def test_status_is_derived_from_dates() -> None:
    version = Version("1", deprecated="2026-01-01", sunset="2027-06-30T23:59:59Z")
    assert version.status(datetime(2025, 1, 1, tzinfo=UTC)) is VersionStatus.DEPRECATED
    assert version.status(datetime(2027, 6, 30, 23, 59, 58, tzinfo=UTC)) is VersionStatus.DEPRECATED
    assert version.status(datetime(2027, 6, 30, 23, 59, 59, tzinfo=UTC)) is VersionStatus.RETIRED
    assert Version("2").status(datetime(2030, 1, 1, tzinfo=UTC)) is VersionStatus.CURRENT
    preview = Version("3", status="preview")
    assert preview.status(datetime(2030, 1, 1, tzinfo=UTC)) is VersionStatus.PREVIEW


def test_dates_accept_aware_datetimes_in_any_zone() -> None:
    plus_two = timezone(timedelta(hours=2))
    version = Version("1", sunset=datetime(2027, 1, 1, 2, 0, tzinfo=plus_two))
    assert version.sunset == datetime(2027, 1, 1, 0, 0, tzinfo=UTC)


def test_naive_datetime_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="time zone"):
        Version("1", sunset=datetime(2027, 1, 1))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"deprecated": "2027-01-01", "sunset": "2026-01-01"}, "precedes"),
        ({"sunset": "next week"}, "ISO 8601"),
        ({"brownouts": [("2027-01-02T00:00:00Z", "2027-01-01T00:00:00Z")]}, "end after"),
        (
            {"sunset": "2030-01-01", "brownouts": [("2029-12-31", "2030-01-02")]},
            "runs past the sunset",
        ),
        ({"status": "retired"}, "preview"),
        ({"successor": "two"}, "successor"),
    ],
)
def test_invalid_versions(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        Version("1", **kwargs)  # type: ignore[arg-type]


def test_brownout_windows() -> None:
    version = Version("1", brownouts=[("2027-03-01T00:00:00Z", "2027-03-01T02:00:00Z")])
    assert version.brownout(datetime(2027, 3, 1, 1, tzinfo=UTC)) is not None
    assert version.brownout(datetime(2027, 3, 1, 2, tzinfo=UTC)) is None
    assert version.brownout(datetime(2027, 2, 28, 23, 59, tzinfo=UTC)) is None
