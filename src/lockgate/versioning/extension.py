"""The Flask extension: :class:`Versioning`, and :func:`url_for` in the served version.

Other packages add routes of their own when versioning is set up on an app
(the OpenAPI documents and ``/docs``, the ``flask api`` commands) through
:func:`on_init`, so versioning never imports them.
"""

from __future__ import annotations

import os
import re
import weakref
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any, TypedDict, TypeVar, Unpack
from urllib.parse import urlencode

from flask import Blueprint, Flask, request
from flask import url_for as flask_url_for
from werkzeug.exceptions import HTTPException, NotFound

from ..errors import ConfigurationError
from ..problems import handle_http_exception
from ..views import OPERATION_ATTR, Operation, mark_neutral
from . import middleware
from .bundle import VersionBundle
from .lifecycle_file import LIFECYCLE_ENV, apply_lifecycle_file
from .migration import DeferringJSON, HeadRoute, build_plans, normal_path, served_view
from .readers import HeaderReader, MediaTypeReader, QueryReader, Reader
from .state import ENVIRON_KEY, RequestVersion, VersioningState, get_state
from .versions import Label, Version

__all__ = ["Versioning", "on_init", "url_for"]

#: Called as ``hook(app, state)`` at the end of every :meth:`Versioning.init_app`.
InitHook = Callable[[Flask, VersioningState], None]
_INIT_HOOKS: list[InitHook] = []


def on_init(hook: InitHook) -> InitHook:
    """Run ``hook(app, state)`` whenever versioning is set up on an app.

    How a package above versioning (``lockgate.openapi``) adds its routes
    without versioning importing it. Registering the same hook twice is a no-op.
    """
    if hook not in _INIT_HOOKS:
        _INIT_HOOKS.append(hook)
    return hook


T = TypeVar("T")
_UNSET: Any = object()
_SLUG = re.compile(r"[^A-Za-z0-9_]")

#: Every config key the extension reads, with its default.
DEFAULTS: dict[str, Any] = {
    "LOCKGATE_PREFIX": "/api",
    "LOCKGATE_HEADER": "API-Version",
    "LOCKGATE_QUERY": "version",
    "LOCKGATE_VENDOR": None,
    "LOCKGATE_DEFAULT_VERSION": "current",
    "LOCKGATE_READERS": ("url", "media_type", "header", "query"),
    "LOCKGATE_PROBLEM_TYPE_BASE": "https://lockgate.dev/problems/",
    "LOCKGATE_TITLE": None,
    "LOCKGATE_DOCS_URL": "/docs",
}
_OPTIONS = {
    "prefix": "LOCKGATE_PREFIX",
    "header": "LOCKGATE_HEADER",
    "query": "LOCKGATE_QUERY",
    "vendor": "LOCKGATE_VENDOR",
    "default": "LOCKGATE_DEFAULT_VERSION",
    "readers": "LOCKGATE_READERS",
}


class Settings(TypedDict, total=False):
    """The settings of :class:`Versioning` that have a ``LOCKGATE_*`` config key.

    A key left out falls back to the config; ``default=None`` is a value
    (strict mode), not a missing one.
    """

    vendor: str | None
    default: str | None
    readers: Sequence[str]
    header: str
    query: str
    prefix: str


def _checked(settings: Settings) -> Settings:
    """``settings``, or a TypeError naming a keyword that is not one (as Python
    itself would for a misspelt argument)."""
    unknown = set(settings) - set(Settings.__annotations__)
    if unknown:
        raise TypeError(
            f"Versioning got unexpected keyword arguments: {', '.join(sorted(unknown))}"
        )
    return settings


def _system_clock() -> datetime:
    return datetime.now(UTC)


class Versioning:
    """Serve several versions of an API side by side, with a deprecation policy.

    :param app: the app to initialise now; or call :meth:`init_app` later.
    :param versions: the :class:`Version` objects the API serves.
    :param vendor: the vendor name in ``application/vnd.<vendor>.v2+json``;
        without it the media type reader is off.
    :param default: ``"current"``, a label, or ``None`` for strict mode.
    :param readers: which of ``url``, ``media_type``, ``header``, ``query``
        to read. A version written in the path is always honoured, since the
        path itself routes to it.
    :param header: the request and response version header.
    :param query: the query parameter.
    :param prefix: the path every versioned route lives under.
    :param clock: returns an aware UTC datetime; for tests.
    :param head: the blueprint (or blueprints) of the newest version, written
        once: registered under every version, each older version served
        through the :class:`~lockgate.VersionChange` classes its successors list.

    Arguments given here win over the app's ``LOCKGATE_*`` config.
    """

    def __init__(
        self,
        app: Flask | None = None,
        *,
        versions: Iterable[Version] = _UNSET,
        clock: Callable[[], datetime] | None = None,
        head: Blueprint | Iterable[Blueprint] | None = None,
        **settings: Unpack[Settings],
    ) -> None:
        self.versions: tuple[Version, ...] | None = None if versions is _UNSET else tuple(versions)
        self.head = _blueprints(head)
        self.options = _checked(settings)
        self.clock = clock
        self._registrations: list[tuple[Blueprint, tuple[str, ...], dict[str, Any]]] = []
        self._apps: weakref.WeakSet[Flask] = weakref.WeakSet()
        if app is not None:
            self.init_app(app)

    def init_app(
        self,
        app: Flask,
        *,
        versions: Iterable[Version] | None = None,
        clock: Callable[[], datetime] | None = None,
        head: Blueprint | Iterable[Blueprint] | None = None,
        **settings: Unpack[Settings],
    ) -> None:
        """Set versioning up on ``app``.

        Reads these config keys (constructor arguments win): ``LOCKGATE_PREFIX``
        (``"/api"``), ``LOCKGATE_HEADER`` (``"API-Version"``), ``LOCKGATE_QUERY``
        (``"version"``), ``LOCKGATE_VENDOR`` (``None``), ``LOCKGATE_DEFAULT_VERSION``
        (``"current"``), ``LOCKGATE_READERS`` (all four),
        ``LOCKGATE_PROBLEM_TYPE_BASE`` (base URI of problem ``type``),
        ``LOCKGATE_TITLE`` (OpenAPI title, default the app name) and
        ``LOCKGATE_DOCS_URL`` (``"/docs"``; ``None`` turns the page off).

        Every keyword of the constructor is accepted here too, for this app
        only, and wins over the constructor's.
        :raises ConfigurationError: invalid versions or settings, or a version
            change that cannot be applied to the head (named in the message).
        :raises RuntimeError: the extension is already registered on ``app``.
        """
        if "lockgate" in app.extensions:
            raise RuntimeError("lockgate.Versioning is already registered on this app")
        for key, value in DEFAULTS.items():
            app.config.setdefault(key, value)
        options: dict[str, Any] = {name: app.config[key] for name, key in _OPTIONS.items()}
        options.update(self.options)
        options.update(_checked(settings))
        chosen = tuple(versions) if versions is not None else self.versions
        if not chosen:
            raise ConfigurationError("Versioning needs versions=[Version(...), ...]")
        now_fn = clock or self.clock or _system_clock
        lifecycle_file = app.config.get(LIFECYCLE_ENV) or os.environ.get(LIFECYCLE_ENV)
        if lifecycle_file:
            # An operator's dates win over the code's, without a release.
            service = app.config.get("LOCKGATE_SERVICE") or app.name
            chosen = tuple(
                apply_lifecycle_file(
                    service, chosen, default=options["default"], path=lifecycle_file, now=now_fn()
                )
            )
        prefix = "/" + str(options["prefix"]).strip("/")
        state = VersioningState(
            bundle=VersionBundle(chosen, options["default"], now_fn()),
            readers=_make_readers(options),
            prefix=prefix,
            header=options["header"],
            query=options["query"],
            vendor=options["vendor"],
            clock=now_fn,
        )
        app.extensions["lockgate"] = state
        app.register_error_handler(HTTPException, handle_http_exception)
        app.register_error_handler(NotFound, middleware.handle_not_found)
        app.add_url_rule(
            middleware.ERROR_PATH,
            "lockgate_refused",
            middleware.raise_recorded,
            methods=["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"],
            provide_automatic_options=False,
        )
        app.wsgi_app = middleware.VersionDispatcher(app.wsgi_app, app)  # type: ignore[method-assign]
        heads = _blueprints(head) if head is not None else self.head
        if heads:
            self._serve_head(app, state, heads)
        elif any(version.changes for version in state.bundle.versions):
            raise ConfigurationError(
                "versions list changes, but no head= names the blueprints they migrate to"
            )
        for hook in _INIT_HOOKS:
            hook(app, state)
        self._apps.add(app)
        for blueprint, labels, options_ in self._registrations:
            self._register(app, blueprint, labels, options_)

    def _serve_head(self, app: Flask, state: VersioningState, heads: tuple[Blueprint, ...]) -> None:
        """Register the head blueprints under every version; give each older
        version's routes the view that migrates to and from the head."""
        versions = state.bundle.versions
        newest = versions[-1].label
        labels = tuple(version.label.text for version in versions)
        for blueprint in heads:
            self._register(app, blueprint, labels, {})
        routes: list[HeadRoute] = []
        base = f"{state.prefix}/v{newest.text}"
        for blueprint in heads:
            name = state.blueprint_names[(blueprint.name, newest)]
            for rule in app.url_map.iter_rules():
                head_name, dot, local = rule.endpoint.partition(".")
                if head_name != name or not dot:
                    continue
                view = app.view_functions[rule.endpoint]
                routes.append(
                    HeadRoute(
                        rule=rule,
                        endpoint=f"{blueprint.name}.{local}",
                        path=normal_path(rule.rule[len(base) :]),
                        methods=frozenset(rule.methods or ()) - {"HEAD", "OPTIONS"},
                        operation=getattr(view, OPERATION_ATTR, None) or Operation(),
                    )
                )
        head = build_plans(versions, routes)
        if not isinstance(app.json, DeferringJSON):
            app.json = DeferringJSON(app, app.json)
        for label, by_endpoint in head.plans.items():
            for endpoint, plan in by_endpoint.items():
                if plan.idle:
                    continue
                blueprint_name, _, local = endpoint.partition(".")
                registered = f"{state.blueprint_names[(blueprint_name, label)]}.{local}"
                app.view_functions[registered] = served_view(app.view_functions[registered], plan)
        state.head = head

    def register_blueprint(
        self,
        blueprint: Blueprint,
        *,
        version: str | None = None,
        versions: Iterable[str] = (),
        **options: Any,
    ) -> None:
        """Mount ``blueprint`` at ``<prefix>/v<label>`` for each version.

        The blueprint's own ``url_prefix`` goes below the version segment. It is
        registered under the name ``<name>_v<label>``; :meth:`url_for` takes the
        plain ``<name>.<view>`` and picks the served version.
        """
        labels = tuple(versions) + ((version,) if version is not None else ())
        if not labels:
            raise ConfigurationError(f"blueprint {blueprint.name!r}: give version= or versions=")
        self._registrations.append((blueprint, labels, options))
        for app in self._apps:
            self._register(app, blueprint, labels, options)

    def _register(
        self, app: Flask, blueprint: Blueprint, labels: tuple[str, ...], options: dict[str, Any]
    ) -> None:
        state = get_state(app)
        for raw in labels:
            label = Label.parse(raw)
            if label is None or state.bundle.get(label) is None:
                raise ConfigurationError(
                    f"blueprint {blueprint.name!r}: version {raw!r} is not declared"
                )
            name = f"{blueprint.name}_v{_SLUG.sub('_', label.text)}"
            below = (options.get("url_prefix") or blueprint.url_prefix or "").rstrip("/")
            app.register_blueprint(
                blueprint,
                **{**options, "name": name, "url_prefix": f"{state.prefix}/v{label.text}{below}"},
            )
            state.blueprint_versions[name] = label
            state.blueprint_names[(blueprint.name, label)] = name
        state.routes = None
        state.successor_rules.clear()

    def neutral(self, view: T) -> T:
        """Mark a view function or a blueprint as version-neutral.

        A neutral route answers with any version or none, ignores version
        parameters and carries no version headers.
        """
        return mark_neutral(view)

    def url_for(self, endpoint: str, *, _version: str | None = None, **values: Any) -> str:
        """:func:`url_for`, kept on the extension for convenience."""
        return url_for(endpoint, _version=_version, **values)


def url_for(endpoint: str, *, _version: str | None = None, **values: Any) -> str:
    """Build a URL to ``endpoint`` in the version and scheme the client used.

    A client that put the version in the path gets a versioned path; one
    that used a header or media type gets the unversioned path; one that
    used the query gets the query parameter back. ``_version`` links to
    another version explicitly (always in the path). ``endpoint`` is the
    plain ``<blueprint>.<view>``, whatever version it is registered for.
    """
    state = get_state()
    found: RequestVersion | None = request.environ.get(ENVIRON_KEY)
    served = found.version if found is not None else None
    label = Label.parse(_version) if _version is not None else None
    if label is None and served is not None:
        label = served.label
    if label is None:
        snapshot = found.snapshot if found is not None else state.bundle.snapshot(state.clock())
        default = snapshot.default
        label = None if default is None else default.label
    head, dot, tail = endpoint.partition(".")
    if label is not None and dot:
        head = state.blueprint_names.get((head, label), head)
    url = flask_url_for(f"{head}{dot}{tail}", **values)
    if _version is not None or found is None or found.negotiated is None:
        return url
    source = found.negotiated.source
    marker = f"{state.prefix}/v{found.negotiated.version.label.text}"
    if source == "url" or not url.startswith(marker):
        return url
    url = state.prefix + url[len(marker) :]
    if source == "query":
        joiner = "&" if "?" in url else "?"
        url += joiner + urlencode({state.query: found.negotiated.version.label.text})
    return url


def _blueprints(head: Blueprint | Iterable[Blueprint] | None) -> tuple[Blueprint, ...]:
    if head is None:
        return ()
    chosen = (head,) if isinstance(head, Blueprint) else tuple(head)
    for blueprint in chosen:
        if not isinstance(blueprint, Blueprint):
            raise ConfigurationError(f"head= takes blueprints, not {blueprint!r}")
    return chosen


def _make_readers(options: dict[str, Any]) -> tuple[Reader, ...]:
    names = tuple(options["readers"])
    unknown = set(names) - {"url", "media_type", "header", "query"}
    if unknown:
        raise ConfigurationError(f"unknown version readers: {', '.join(sorted(unknown))}")
    # The path is always read (it routes), by the dispatcher itself: see UrlReader.
    readers: list[Reader] = []
    if "media_type" in names and options["vendor"]:
        readers.append(MediaTypeReader(options["vendor"]))
    if "header" in names:
        readers.append(HeaderReader(options["header"]))
    if "query" in names:
        readers.append(QueryReader(options["query"]))
    return tuple(readers)
