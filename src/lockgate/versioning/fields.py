"""The values of the lifecycle header fields: ``Deprecation`` (RFC 9745),
``Sunset`` (RFC 8594) and ``Link`` (RFC 8288)."""

from __future__ import annotations

from datetime import datetime

from werkzeug.http import http_date

from .versions import Version

__all__ = ["deprecation_value", "lifecycle_links", "sunset_value"]


def deprecation_value(moment: datetime) -> str:
    """``Deprecation`` as an RFC 9651 date: ``@`` and Unix seconds (RFC 9745)."""
    return f"@{int(moment.timestamp())}"


def sunset_value(moment: datetime) -> str:
    """``Sunset`` as an IMF-fixdate (RFC 8594)."""
    return http_date(moment)


def lifecycle_links(version: Version, successor_url: str | None) -> list[str]:
    """``Link`` values: the deprecation policy and the successor's same route."""
    links = []
    if version.policy:
        links.append(f'<{version.policy}>; rel="deprecation"; type="text/html"')
    if successor_url:
        links.append(f'<{successor_url}>; rel="successor-version"')
    return links
