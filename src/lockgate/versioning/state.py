"""Per-app state of the extension, kept at ``app.extensions["lockgate"]``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from flask import Flask, current_app, request

from ..errors import ApiVersionError
from .bundle import Snapshot, VersionBundle
from .fields import deprecation_value, lifecycle_links, sunset_value
from .migration import HeadPlan
from .negotiation import Negotiated
from .readers import Reader
from .routes import RouteIndex
from .versions import Label, Version, VersionStatus

__all__ = [
    "ENVIRON_KEY",
    "RequestVersion",
    "VersioningState",
    "current_version",
    "get_state",
    "request_version",
]

#: Where the dispatcher leaves its decision for the Flask side.
ENVIRON_KEY = "lockgate.version"
#: Distinct header/query combinations remembered before the cache starts over.
MAX_DECISIONS = 4096
#: The environ values a decision is cached on: every reader's keys, padded to
#: this many with a key no environ has, so the dispatcher reads them unrolled.
KEY_SLOTS = 4
_NO_KEY = "lockgate.no-such-key"


@dataclass(slots=True, frozen=True)
class Decision:
    """A negotiation outcome with everything its responses need, for one
    lifecycle period (kept in :attr:`Snapshot.decisions`)."""

    negotiated: Negotiated
    #: The path named no version (``/api/users``).
    unversioned: bool
    #: The version is retired or browned out throughout the period.
    refused: bool
    #: ``<prefix>/v<label>``: where an unversioned path is routed.
    path: str
    #: ``API-Supported-Versions``, ``API-Deprecated-Versions``, ``API-Version``,
    #: ``Deprecation``, ``Sunset``: the same on every response of the period.
    headers: tuple[tuple[str, str], ...]
    #: :attr:`headers` and ``Vary``, for an unversioned path.
    vary_headers: tuple[tuple[str, str], ...]
    #: The vendor media type echoed in a JSON ``Content-Type``, label filled in.
    media_type: str | None
    #: The version has a deprecation or sunset: its responses carry ``Link``.
    links: bool
    #: The ``Link`` value of the deprecation policy, or ``None``.
    policy: str | None
    #: What comes before the successor's link in ``Link``: the policy and a comma.
    link_head: str
    #: ``<prefix>/v<successor>``, or ``None`` without a declared successor.
    successor: str | None
    #: Rule of this version -> ``Link`` up to the path below the version, or
    #: ``""`` when the successor lacks the route (filled as rules are seen).
    link_heads: dict[str, str] = field(default_factory=dict, compare=False)


@dataclass(slots=True)
class RequestVersion:
    """What versioning decided for one request, once, at one instant.

    The response headers, the rate limit bucket, metrics, usage and logs all
    read this: none of them calls the clock or the bundle again, so near a
    lifecycle instant they cannot disagree.
    """

    negotiated: Negotiated | None
    error: ApiVersionError | None
    #: The client used no version in the path (``/api/users``).
    unversioned: bool
    #: The path below the version segment (``/users/5``).
    rest: str
    #: The lifecycle when the request arrived; its headers use the same one.
    snapshot: Snapshot

    @property
    def version(self) -> Version | None:
        return None if self.negotiated is None else self.negotiated.version

    @property
    def status(self) -> VersionStatus | None:
        """The served version's status at the instant of :attr:`snapshot`."""
        version = self.version
        return None if version is None else self.snapshot.statuses[version.label]

    @property
    def deprecated(self) -> bool:
        """Whether the served version was deprecated when the request arrived."""
        return self.status is VersionStatus.DEPRECATED


@dataclass(slots=True)
class VersioningState:
    """Everything one app's versioning needs at request time."""

    bundle: VersionBundle
    readers: tuple[Reader, ...]
    prefix: str
    header: str
    query: str
    vendor: str | None
    clock: Callable[[], datetime]
    #: Registered blueprint name -> the version it serves.
    blueprint_versions: dict[str, Label] = field(default_factory=dict)
    #: (original blueprint name, version) -> registered blueprint name.
    blueprint_names: dict[tuple[str, Label], str] = field(default_factory=dict)
    #: Filled on the first request, when the URL map is complete.
    routes: RouteIndex | None = None
    #: With ``head=``: how the head serves every version.
    head: HeadPlan | None = None

    #: Every environ key the readers look at.
    reader_keys: tuple[str, ...] = ()
    #: ``<prefix>/v`` and ``<prefix>/V``: only paths starting so can name a version.
    versioned: str = ""
    versioned_upper: str = ""
    #: Each version's label as written in its canonical path (``1``, ``2026-01-01``).
    label_texts: frozenset[str] = frozenset()
    #: ``<prefix>/``: every path versioning looks at starts so (or is the prefix).
    prefix_slash: str = ""
    prefix_length: int = 0
    #: Where the first segment below the prefix starts.
    segment_at: int = 0
    #: ``v<label>`` of every version, canonical -> the label's text.
    segments: dict[str, str] = field(default_factory=dict)
    #: :data:`KEY_SLOTS` environ keys a decision is cached on (see :data:`KEY_SLOTS`).
    key_names: tuple[str, ...] = ()
    #: ``key_names`` has exactly :data:`KEY_SLOTS` keys (every built-in reader set has).
    unrolled: bool = True

    def __post_init__(self) -> None:
        self.reader_keys = tuple(key for reader in self.readers for key in reader.keys)
        self.key_names = self.reader_keys + (_NO_KEY,) * (KEY_SLOTS - len(self.reader_keys))
        self.unrolled = len(self.key_names) == KEY_SLOTS
        self.versioned = f"{self.prefix}/v"
        self.versioned_upper = f"{self.prefix}/V"
        self.prefix_slash = f"{self.prefix}/"
        self.prefix_length = len(self.prefix)
        self.segment_at = len(self.prefix_slash)
        self.vary = f"Accept, {self.header}"
        self.label_texts = frozenset(version.label.text for version in self.bundle.versions)
        self.segments = {
            f"v{version.label.text}": version.label.text for version in self.bundle.versions
        }

    def remember(
        self,
        key: tuple[str | None, ...],
        negotiated: Negotiated,
        snapshot: Snapshot,
        unversioned: bool,
    ) -> Decision:
        """Cache a negotiation for the snapshot's lifecycle period; bounded."""
        version = negotiated.version
        text = version.label.text
        policy = self.policy_link(version)
        links = version.deprecated is not None or version.sunset is not None
        prefixes = self.successor_prefixes(version)
        block = self.header_block(snapshot, version)
        decision = Decision(
            negotiated=negotiated,
            unversioned=unversioned,
            refused=version.label in snapshot.refused,
            path=f"{self.versioned}{text}",
            headers=block,
            vary_headers=(*block, ("Vary", self.vary)),
            media_type=None
            if negotiated.media_type is None
            else negotiated.media_type.format(text),
            links=links,
            policy=policy,
            link_head=f"{policy}, " if policy else "",
            successor=None if prefixes is None else prefixes[1],
        )
        if len(snapshot.decisions) >= MAX_DECISIONS:
            snapshot.decisions.clear()
        snapshot.decisions[key] = decision
        return decision

    #: ``Vary`` of a response to an unversioned path.
    vary: str = ""

    def header_block(
        self, snapshot: Snapshot, version: Version | None
    ) -> tuple[tuple[str, str], ...]:
        """The version lists, ``API-Version``, ``Deprecation`` and ``Sunset``."""
        label = None if version is None else version.label
        block = snapshot.header_blocks.get(label)
        if block is None:
            headers = []
            if snapshot.supported_header:
                headers.append(("API-Supported-Versions", snapshot.supported_header))
            if snapshot.deprecated_header:
                headers.append(("API-Deprecated-Versions", snapshot.deprecated_header))
            if version is not None:
                # A retired version's 410 names it too: the answer is about that version.
                headers.append(("API-Version", version.label.text))
                headers.extend(self.lifecycle_headers(version))
            block = snapshot.header_blocks[label] = tuple(headers)
        return block

    #: Version -> its ``Deprecation``, ``Sunset`` headers (they never change).
    _lifecycle: dict[Label, list[tuple[str, str]]] = field(default_factory=dict)

    def lifecycle_headers(self, version: Version) -> list[tuple[str, str]]:
        headers = self._lifecycle.get(version.label)
        if headers is None:
            headers = []
            if version.deprecated is not None:
                headers.append(("Deprecation", deprecation_value(version.deprecated)))
            if version.sunset is not None:
                headers.append(("Sunset", sunset_value(version.sunset)))
            self._lifecycle[version.label] = headers
        return headers

    #: Version -> (its own path prefix, its successor's), or ``None``.
    _successors: dict[Label, tuple[str, str] | None] = field(default_factory=dict)
    #: Versioned rule -> whether the successor version has the same route.
    successor_rules: dict[str, bool] = field(default_factory=dict)

    def successor_prefixes(self, version: Version) -> tuple[str, str] | None:
        try:
            return self._successors[version.label]
        except KeyError:
            found = None
            successor = None if version.successor is None else self.bundle.get(version.successor)
            if successor is not None:
                found = (f"{self.prefix}/v{version.label}", f"{self.prefix}/v{successor.label}")
            self._successors[version.label] = found
            return found

    _policies: dict[Label, str | None] = field(default_factory=dict)

    def policy_link(self, version: Version) -> str | None:
        """The ``Link`` value of the deprecation policy (RFC 9745)."""
        try:
            return self._policies[version.label]
        except KeyError:
            links = lifecycle_links(version, None)
            found = self._policies[version.label] = links[0] if links else None
            return found

    def route_index(self, app: Flask) -> RouteIndex:
        if self.routes is None:
            self.routes = RouteIndex.build(
                app,
                self.prefix,
                (version.label for version in self.bundle.versions),
                self.blueprint_versions,
            )
        return self.routes


def get_state(app: Flask | None = None) -> VersioningState:
    """The versioning state of ``app`` (default: the current app)."""
    app = app or current_app
    try:
        state: VersioningState = app.extensions["lockgate"]
    except KeyError:
        raise RuntimeError("lockgate.Versioning is not initialised on this app") from None
    return state


def request_version() -> RequestVersion | None:
    """What versioning decided for this request: the version, its status at that
    instant and the lifecycle snapshot; ``None`` on a neutral route.

    The one seam between versioning and the layers above it.
    """
    found: RequestVersion | None = request.environ.get(ENVIRON_KEY)
    return found


def current_version() -> Version | None:
    """The :class:`Version` being served, inside a request; ``None`` on a neutral route."""
    found: RequestVersion | None = request.environ.get(ENVIRON_KEY)
    return None if found is None else found.version
