"""The ways a client can name a version, one small class each.

Every reader answers one question, "which versions does this request name?",
and knows nothing of which versions exist: deciding is the negotiator's job.
Readers see the WSGI environ rather than a ``Request``: they run on every
request before Flask builds one, and building a second would double the cost.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, NamedTuple, Protocol
from urllib.parse import parse_qsl

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIEnvironment

__all__ = [
    "Found",
    "HeaderReader",
    "MediaTypeReader",
    "QueryReader",
    "Reader",
    "UrlReader",
    "split_url_version",
]

#: A path segment that is an attempt at a version: ``v`` and a digit.
_SEGMENT = re.compile(r"[vV](\d[^/]*)")


class Found(NamedTuple):
    """One version named by a request, as the client wrote it."""

    #: The label text, not yet parsed (``"1"``, ``"v1.0"``, ``"banana"``).
    raw: str
    #: Where it came from: ``url``, ``header``, ``query``, ``accept`` or ``content-type``.
    source: str
    #: The ``q`` of an ``Accept`` range; 1 elsewhere.
    quality: float = 1.0
    #: For media types, the vendor type with ``{}`` where the label goes.
    media_type: str | None = None


class Reader(Protocol):
    """Reads the versions a request names."""

    #: The name used in ``Versioning(readers=...)``.
    name: str
    #: The environ keys it reads: a request's negotiation is cached on their values.
    keys: tuple[str, ...]

    def read(self, environ: WSGIEnvironment) -> list[Found]: ...


def split_url_version(path: str, prefix: str) -> tuple[str, str] | None:
    """Split ``/api/v1/users`` into ``("1", "/users")``; ``None`` when unversioned."""
    if not path.startswith(prefix) or path[len(prefix) : len(prefix) + 1] != "/":
        return None
    segment, slash, rest = path[len(prefix) + 1 :].partition("/")
    match = _SEGMENT.fullmatch(segment)
    if match is None:
        return None
    return match[1], slash + rest


class UrlReader:
    """``/api/v1/users``: the first segment under the prefix.

    The dispatcher splits the path itself (it needs the rest of it to route),
    so this reader is for code that inspects a request from outside.
    """

    name = "url"
    keys: tuple[str, ...] = ("PATH_INFO",)

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    def read(self, environ: WSGIEnvironment) -> list[Found]:
        split = split_url_version(environ.get("PATH_INFO") or "/", self.prefix)
        return [] if split is None else [Found(split[0], "url")]


class HeaderReader:
    """``API-Version: 1``; several lines or a comma list are several values."""

    name = "header"

    def __init__(self, header: str) -> None:
        self.header = header
        self.key = "HTTP_" + header.upper().replace("-", "_")
        self.keys: tuple[str, ...] = (self.key,)

    def read(self, environ: WSGIEnvironment) -> list[Found]:
        # WSGI servers join repeated header lines with commas.
        value = environ.get(self.key)
        if not value:
            return []
        return [Found(item.strip(), "header") for item in value.split(",") if item.strip()]


class QueryReader:
    """``?version=1``; a repeated parameter is several values."""

    name = "query"
    keys: tuple[str, ...] = ("QUERY_STRING",)

    def __init__(self, parameter: str) -> None:
        self.parameter = parameter

    def read(self, environ: WSGIEnvironment) -> list[Found]:
        query = environ.get("QUERY_STRING")
        if not query or self.parameter not in query:
            return []
        return [
            Found(value.strip(), "query")
            for key, value in parse_qsl(query, keep_blank_values=True)
            if key == self.parameter
        ]


class MediaTypeReader:
    """``Accept: application/vnd.myapp.v1+json`` (or ``...+json; version=1``).

    Reads ``Accept`` with its q-values and, for request bodies, ``Content-Type``.
    """

    name = "media_type"
    keys: tuple[str, ...] = ("HTTP_ACCEPT", "CONTENT_TYPE")

    def __init__(self, vendor: str) -> None:
        self.marker = f"vnd.{vendor.lower()}"
        vendor_re = re.escape(vendor.lower())
        self._type = re.compile(
            rf"application/vnd\.{vendor_re}(?:\.v(?P<label>[^+;\s]+))?\+json", re.IGNORECASE
        )

    def read(self, environ: WSGIEnvironment) -> list[Found]:
        found: list[Found] = []
        accept = environ.get("HTTP_ACCEPT", "")
        if self.marker in accept.lower():
            for item in accept.split(","):
                hit = self._parse(item, "accept")
                if hit is not None and hit.quality > 0:
                    found.append(hit)
        content_type = environ.get("CONTENT_TYPE", "")
        if self.marker in content_type.lower():
            hit = self._parse(content_type, "content-type")
            if hit is not None:
                found.append(hit)
        return found

    def _parse(self, item: str, source: str) -> Found | None:
        media, *params = (part.strip() for part in item.split(";"))
        match = self._type.fullmatch(media)
        if match is None:
            return None
        options = {}
        for param in params:
            key, _, value = param.partition("=")
            options[key.strip().lower()] = value.strip().strip('"')
        label = match["label"]
        # Echoed in Content-Type: the canonical spelling, not the client's.
        lowered = media.lower()
        template = lowered[: match.start("label")] + "{}" + lowered[match.end("label") :]
        if label is None:
            label = options.get("version")
            if label is None:
                return None
            template = f"{lowered}; version={{}}"
        try:
            quality = float(options.get("q", "1"))
        except ValueError:
            quality = 0.0
        return Found(label, source, quality, template)
