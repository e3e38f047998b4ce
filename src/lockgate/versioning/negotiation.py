"""Deciding the one version a request gets from what its readers found.

Order of checks, each a different answer: malformed (400), disagreement (400),
nothing said (default, or 400 in strict mode), unknown (404/400/406/415 by
where it was said). Retirement and brownouts are decided later, by the
extension, because their answers carry links into the URL map.
"""

from __future__ import annotations

from typing import NamedTuple

from ..errors import (
    AmbiguousApiVersion,
    ApiVersionUnspecified,
    InvalidApiVersion,
    UnsupportedApiVersion,
)
from .bundle import Snapshot, VersionBundle
from .readers import Found
from .versions import Label, Version

__all__ = ["Negotiated", "negotiate"]

#: The status for an unknown version, by the most authoritative place it was named.
_UNKNOWN_STATUS = {"url": 404, "header": 400, "query": 400, "accept": 406, "content-type": 415}


class Negotiated(NamedTuple):
    """The outcome of negotiation for one request."""

    version: Version
    #: Where the version came from: a reader source, or ``"default"``.
    source: str
    #: The vendor media type template the client used, to echo in ``Content-Type``.
    media_type: str | None = None


def negotiate(found: list[Found], bundle: VersionBundle, snapshot: Snapshot) -> Negotiated:
    """Pick the version for a request.

    :raises InvalidApiVersion: a label is malformed.
    :raises AmbiguousApiVersion: two different versions are named.
    :raises ApiVersionUnspecified: nothing is named and there is no default.
    :raises UnsupportedApiVersion: the version is not declared.
    """
    if len(found) == 1:  # the common case: one reader spoke
        only = found[0]
        label = Label.parse(only.raw)
        version = None if label is None else bundle.get(label)
        if version is not None:
            return Negotiated(version, only.source, only.media_type)
    parsed: list[tuple[Label, Found]] = []
    for item in found:
        label = Label.parse(item.raw)
        if label is None:
            raise InvalidApiVersion(
                f"{item.raw!r} (from the {item.source}) is not a valid API version; "
                "use MAJOR[.MINOR] or YYYY-MM-DD",
                value=item.raw,
                source=item.source,
            )
        parsed.append((label, item))
    parsed = _best_accept(parsed, bundle)
    labels = {label for label, _ in parsed}
    if len(labels) > 1:
        named = ", ".join(f"{item.raw} ({item.source})" for _, item in parsed)
        raise AmbiguousApiVersion(
            f"the request names more than one API version: {named}",
            versions=sorted(label.text for label in labels),
        )
    if not parsed:
        if snapshot.default is None:
            raise ApiVersionUnspecified("this API requires an explicit API version")
        return Negotiated(snapshot.default, "default")
    label = parsed[0][0]
    version = bundle.get(label)
    if version is None:
        sources = {item.source for _, item in parsed}
        source = next(s for s in _UNKNOWN_STATUS if s in sources)
        raise UnsupportedApiVersion(
            f"API version {label} is not supported",
            status=_UNKNOWN_STATUS[source],
            requested=label.text,
        )
    media = next((item for _, item in parsed if item.media_type is not None), None)
    first = parsed[0][1]
    return Negotiated(version, first.source, media.media_type if media else None)


def _best_accept(
    parsed: list[tuple[Label, Found]], bundle: VersionBundle
) -> list[tuple[Label, Found]]:
    """Keep the one ``Accept`` range the client prefers among those we can serve.

    Ranges of known versions beat unknown ones; then the highest ``q`` wins.
    Two different versions at the top ``q`` stay, and are reported ambiguous.
    """
    accept = [pair for pair in parsed if pair[1].source == "accept"]
    if len(accept) < 2:
        return parsed
    known = [pair for pair in accept if bundle.get(pair[0]) is not None] or accept
    top = max(item.quality for _, item in known)
    keep = [pair for pair in known if pair[1].quality == top]
    return [pair for pair in parsed if pair[1].source != "accept"] + keep
