"""Per-app state of the extension, kept at ``app.extensions["lockgate"]``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

from flask import Flask, current_app, request
from werkzeug.exceptions import HTTPException, MethodNotAllowed
from werkzeug.routing import Map, Rule

from .bundle import Snapshot, VersionBundle
from .errors import ApiVersionError
from .lifecycle import deprecation_value, lifecycle_links, sunset_value
from .negotiation import Negotiated
from .readers import Reader
from .versions import Label, Version

if TYPE_CHECKING:
    from .extension import Versioning

__all__ = [
    "ENVIRON_KEY",
    "ORIGINAL_PATH_KEY",
    "RequestVersion",
    "VersioningState",
    "current_version",
]

#: Where the dispatcher leaves its decision for the Flask side.
ENVIRON_KEY = "lockgate.version"
#: The path the client asked for, kept when the dispatcher rewrites ``PATH_INFO``.
ORIGINAL_PATH_KEY = "lockgate.original_path"
F = TypeVar("F", bound=Callable[..., Any])
NEUTRAL_ATTR = "_lockgate_neutral"
#: A view's own ``Cache-Control`` (see :func:`lockgate.caching.cache_control`).
CONTROL_ATTR = "_lockgate_cache_control"
#: Distinct header/query combinations remembered before the cache starts over.
MAX_DECISIONS = 4096


@dataclass(slots=True)
class RequestVersion:
    """What negotiation decided for one request."""

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


@dataclass(slots=True)
class VersioningState:
    """Everything one app's versioning needs at request time."""

    versioning: Versioning
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

    #: Every environ key the readers look at.
    reader_keys: tuple[str, ...] = ()
    #: ``<prefix>/v`` and ``<prefix>/V``: only paths starting so can name a version.
    versioned: str = ""
    versioned_upper: str = ""
    #: Each version's label as written in its canonical path (``1``, ``2026-01-01``).
    label_texts: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        self.reader_keys = tuple(key for reader in self.readers for key in reader.keys)
        self.versioned = f"{self.prefix}/v"
        self.versioned_upper = f"{self.prefix}/V"
        self.vary = f"Accept, {self.header}"
        self.label_texts = frozenset(version.label.text for version in self.bundle.versions)

    @staticmethod
    def remember(key: tuple[str | None, ...], negotiated: Negotiated, snapshot: Snapshot) -> None:
        """Cache a negotiation for the snapshot's lifecycle period; bounded."""
        if len(snapshot.decisions) >= MAX_DECISIONS:
            snapshot.decisions.clear()
        snapshot.decisions[key] = negotiated

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
            self.routes = RouteIndex.build(app, self)
        return self.routes


@dataclass(slots=True)
class RouteIndex:
    """The URL map seen from versioning: neutral paths and each version's routes."""

    neutral_static: frozenset[str]
    neutral_dynamic: Map | None
    #: Version -> rule templates below the version segment (``/users/<int:id>``).
    templates: dict[Label, frozenset[str]]

    @classmethod
    def build(cls, app: Flask, state: VersioningState) -> RouteIndex:
        static: set[str] = set()
        dynamic: list[Rule] = []
        templates: dict[Label, set[str]] = {v.label: set() for v in state.bundle.versions}
        prefix = state.prefix
        for rule in app.url_map.iter_rules():
            if not (rule.rule == prefix or rule.rule.startswith(prefix + "/")):
                continue
            blueprint = rule.endpoint.rpartition(".")[0].partition(".")[0]
            label = state.blueprint_versions.get(blueprint)
            view = app.view_functions.get(rule.endpoint)
            owner = app.blueprints.get(blueprint)
            neutral = (
                label is None
                or getattr(view, NEUTRAL_ATTR, False)
                or getattr(owner, NEUTRAL_ATTR, False)
            )
            if neutral:
                if rule.arguments:
                    dynamic.append(Rule(rule.rule, endpoint=rule.endpoint))
                else:
                    static.add(rule.rule)
                continue
            assert label is not None
            templates[label].add(rule.rule[len(f"{prefix}/v{label.text}") :])
        return cls(
            neutral_static=frozenset(static),
            neutral_dynamic=Map(dynamic) if dynamic else None,
            templates={label: frozenset(paths) for label, paths in templates.items()},
        )

    def is_neutral(self, path: str) -> bool:
        if path in self.neutral_static:
            return True
        if self.neutral_dynamic is None:
            return False
        try:
            self.neutral_dynamic.bind("localhost").match(path, method="GET")
        except MethodNotAllowed:
            return True
        except HTTPException:
            return False
        return True


def cache_control(value: str) -> Callable[[F], F]:
    """Give a view its own ``Cache-Control`` on 200 GETs (the default is
    ``LOCKGATE_CACHE_CONTROL``): ``no-store`` for probes, ``max-age`` for what
    rarely changes."""

    def decorate(view: F) -> F:
        setattr(view, CONTROL_ATTR, value)
        return view

    return decorate


def get_state(app: Flask | None = None) -> VersioningState:
    """The versioning state of ``app`` (default: the current app)."""
    app = app or current_app
    try:
        state: VersioningState = app.extensions["lockgate"]
    except KeyError:
        raise RuntimeError("lockgate.Versioning is not initialised on this app") from None
    return state


def current_version() -> Version | None:
    """The :class:`Version` being served, inside a request; ``None`` on a neutral route."""
    found: RequestVersion | None = request.environ.get(ENVIRON_KEY)
    return None if found is None else found.version
