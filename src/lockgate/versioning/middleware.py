"""Where a request meets versioning: before routing, before the view, after it.

- :class:`VersionDispatcher` wraps ``app.wsgi_app``. For a path under the
  prefix that is not version-neutral it negotiates the version and rewrites
  ``/api/users`` to ``/api/v2/users``, so Flask routes, runs blueprint hooks
  and builds URLs exactly as if the client had written the version.
- a refused request (failed negotiation, retired version, brownout) is routed
  to :func:`raise_recorded`, so its problem goes through Flask's error
  handling; :func:`handle_not_found` turns a 404 into "this route exists in v2".
- the version and lifecycle headers go on every response of a versioned
  route, errors included, as the dispatcher passes the response's headers on
  to the server (see :mod:`.headers`).

Nothing here may raise outside Flask's error handling: the dispatcher only
records its decision in the WSGI environ.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from datetime import datetime
from functools import partial
from typing import TYPE_CHECKING, Any

from flask import Flask, Response, current_app, request
from werkzeug.exceptions import HTTPException, NotFound

from ..errors import ApiVersionBrownout, ApiVersionError, ApiVersionSunset, UnsupportedApiVersion
from ..problems import ORIGINAL_PATH_KEY, handle_http_exception
from .fields import sunset_value
from .headers import (
    route_exists,
    start_lifecycle,
    start_media,
    start_plain,
    start_unversioned,
    starter,
)
from .negotiation import negotiate
from .readers import Found, split_url_version
from .state import ENVIRON_KEY, Decision, RequestVersion, VersioningState
from .versions import Label, Version, VersionStatus

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

__all__ = [
    "ERROR_PATH",
    "VersionDispatcher",
    "handle_not_found",
    "raise_recorded",
    "route_template",
]

#: Where a refused request is routed so its problem goes through Flask's error handling.
ERROR_PATH = "/_lockgate/refused"
_new = object.__new__


class VersionDispatcher:
    """WSGI middleware: negotiates, rewrites unversioned paths, writes headers.

    Headers are added to the final header list in ``start_response``, after
    Flask is done: every response of a versioned route gets them, errors and
    responses served from a cache included, at the cost of a list extend.

    ``__call__`` is the path of most requests, a served version written
    canonically (``/api/v2/users/5``) whose negotiation is cached for this
    lifecycle period; everything else (unversioned paths, other spellings,
    neutral routes, first sightings, refusals) goes through :meth:`decide`.
    Both end in the same :class:`~.state.Decision`, so both answer alike.
    """

    def __init__(self, wsgi_app: WSGIApplication, app: Flask) -> None:
        self.wsgi_app = wsgi_app
        self.app = app
        self.state: VersioningState | None = None

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        path: str = environ.get("PATH_INFO") or "/"
        state = self.state
        if state is None:
            state = self.state = self.app.extensions["lockgate"]
        if not path.startswith(state.prefix_slash):
            if path == state.prefix:
                return self.slow(environ, start_response, path, state)
            return self.wsgi_app(environ, start_response)
        routes = state.routes or state.route_index(self.app)
        # Every step below costs about as much as a few lines of Flask's own
        # request handling, so the common case takes as few as it can.
        if path in routes.neutral_static or (
            routes.neutral_dynamic is not None and routes.is_neutral(path)
        ):
            return self.slow(environ, start_response, path, state)
        # Decisions are cached on the first segment below the prefix (``v2``,
        # or ``users`` for an unversioned path) and what the readers read.
        segment, slash, below = path[state.segment_at :].partition("/")
        now = state.clock()
        snapshot = state.bundle.last
        if now < snapshot.since or (snapshot.until is not None and now >= snapshot.until):
            snapshot = state.bundle.snapshot(now)
        get = environ.get
        key: tuple[str | None, ...]
        if state.unrolled:
            first, second, third, fourth = state.key_names
            key = (segment, get(first), get(second), get(third), get(fourth))
        else:
            key = (segment, *map(get, state.key_names))
        decision: Decision | None = snapshot.decisions.get(key)
        if decision is None or decision.refused:
            # The instant already read is the request's: one reading per request.
            return self.slow(environ, start_response, path, state, now)
        unversioned = decision.unversioned
        if unversioned:  # /api/users: routed to /api/v2/users
            rest = path[state.prefix_length :]
            environ[ORIGINAL_PATH_KEY] = path
            environ["PATH_INFO"] = decision.path + rest
        else:
            rest = slash + below
        # Built without calling __init__: this is a third cheaper, and the
        # fields are all set here (the dataclass's own order).
        found = _new(RequestVersion)
        found.negotiated = decision.negotiated
        found.error = None
        found.unversioned = unversioned
        found.rest = rest
        found.snapshot = snapshot
        environ[ENVIRON_KEY] = found
        # The response's headers, by the kind of decision: a partial is the
        # cheapest way to hand start_response what it needs (cheaper than a closure).
        if decision.links:
            vary = state.vary if unversioned else None
            start = partial(start_lifecycle, start_response, state, found, environ, decision, vary)
            return self.wsgi_app(environ, start)
        media_type = decision.media_type
        if media_type is not None:
            vary = state.vary if unversioned else None
            start = partial(start_media, start_response, decision, media_type, vary)
            return self.wsgi_app(environ, start)
        if unversioned:
            start = partial(start_unversioned, start_response, decision, state.vary)
            return self.wsgi_app(environ, start)
        return self.wsgi_app(environ, partial(start_plain, start_response, decision.headers))

    def slow(
        self,
        environ: WSGIEnvironment,
        start_response: StartResponse,
        path: str,
        state: VersioningState,
        now: datetime | None = None,
    ) -> Iterable[bytes]:
        """Every request the fast path of :meth:`__call__` does not take."""
        found, decision = self.decide(environ, path, state, now)
        if found is None:
            return self.wsgi_app(environ, start_response)
        return self.wsgi_app(environ, starter(start_response, state, found, environ, decision))

    def decide(
        self,
        environ: WSGIEnvironment,
        path: str,
        state: VersioningState,
        now: datetime | None = None,
    ) -> tuple[RequestVersion | None, Decision | None]:
        """Negotiate, rewrite the path; record the outcome in the environ."""
        routes = state.routes or state.route_index(self.app)
        # The path is read here rather than by UrlReader: the split is needed anyway.
        prefix = state.prefix
        split = (
            split_url_version(path, prefix)
            if path.startswith(state.versioned) or path.startswith(state.versioned_upper)
            else None
        )
        rest = path[len(prefix) :] if split is None else split[1]
        unversioned = split is None
        # Routing and neutrality go by the canonical spelling: /api/V1.0/x is /api/v1/x.
        canonical = path
        if split is not None and (
            split[0] not in state.label_texts or path[len(prefix) + 1] != "v"
        ):
            label = Label.parse(split[0])
            if label is not None:
                canonical = f"{prefix}/v{label.text}{rest}"
        if canonical in routes.neutral_static or (
            routes.neutral_dynamic is not None and routes.is_neutral(canonical)
        ):
            if canonical != path:
                environ[ORIGINAL_PATH_KEY] = path
                environ["PATH_INFO"] = canonical
            return None, None
        if now is None:
            now = state.clock()
        snapshot = state.bundle.snapshot(now)
        # The fast path's key where it would look (see __call__); another
        # spelling (/api/V1.0/...) keeps its own, one longer, so never the same.
        segment = path[state.segment_at :].partition("/")[0]
        head: tuple[str | None, ...] = (
            (segment,)
            if path != prefix and (segment in state.segments or segment in routes.resources)
            else ("", None if split is None else split[0])
        )
        key = (*head, *map(environ.get, state.key_names))
        decision: Decision | None = snapshot.decisions.get(key)
        if decision is None:
            found: list[Found] = [] if split is None else [Found(split[0], "url")]
            for reader in state.readers:
                found.extend(reader.read(environ))
            try:
                negotiated = negotiate(found, state.bundle, snapshot)
            except ApiVersionError as error:
                refused = RequestVersion(None, error, unversioned, rest, snapshot)
                return _refused(environ, refused), None
            decision = state.remember(key, negotiated, snapshot, unversioned)
        version = decision.negotiated.version
        if decision.refused:
            try:
                refuse(version, snapshot.statuses[version.label], now)
            except ApiVersionError as error:
                refused = RequestVersion(decision.negotiated, error, unversioned, rest, snapshot)
                return _refused(environ, refused), decision
        if split is None or canonical != path or split[0] != version.label.text:
            environ[ORIGINAL_PATH_KEY] = path
            environ["PATH_INFO"] = decision.path + rest
        served = environ[ENVIRON_KEY] = RequestVersion(
            decision.negotiated, None, unversioned, rest, snapshot
        )
        return served, decision


def _record(environ: WSGIEnvironment, found: RequestVersion) -> RequestVersion:
    environ[ENVIRON_KEY] = found
    return found


def _refused(environ: WSGIEnvironment, found: RequestVersion) -> RequestVersion:
    environ[ORIGINAL_PATH_KEY] = environ.get("PATH_INFO")
    environ["PATH_INFO"] = ERROR_PATH
    return _record(environ, found)


def refuse(version: Version, status: VersionStatus, now: datetime) -> None:
    """Raise for a retired version or one inside a brownout window."""
    if status is VersionStatus.RETIRED:
        assert version.sunset is not None
        raise ApiVersionSunset(
            f"API version {version.label} was retired on {sunset_value(version.sunset)}"
            + (f"; use version {version.successor}" if version.successor else ""),
            sunset=version.sunset.isoformat().replace("+00:00", "Z"),
            successor=None if version.successor is None else version.successor.text,
        )
    window = version.brownout(now) if version.brownouts else None
    if window is not None:
        seconds = max(1, math.ceil((window[1] - now).total_seconds()))
        raise ApiVersionBrownout(
            f"API version {version.label} is in a scheduled brownout until "
            f"{sunset_value(window[1])} ahead of its sunset; migrate to version "
            f"{version.successor or 'a newer version'}",
            headers={"Retry-After": str(seconds)},
            retry_after=seconds,
        )


def raise_recorded() -> Response:
    """The view behind :data:`ERROR_PATH`: raise the problem negotiation recorded.

    Routing a refused request to this view, rather than checking every request
    in a ``before_request`` hook, keeps the served path free of any Flask hook.
    """
    found: RequestVersion | None = request.environ.get(ENVIRON_KEY)
    if found is None or found.error is None:
        raise NotFound()
    raise found.error


def route_template() -> str | None:
    """The route of this request, for metrics and logs: a rule template, never a
    raw path. A refused request (``/api/v0/users/5``) reports the route it asked
    for (``/api/v0/users/<int:id>``) when a served version has it."""
    environ = request.environ
    if _ROUTE_KEY not in environ:
        environ[_ROUTE_KEY] = _route_template()
    route: str | None = environ[_ROUTE_KEY]
    return route


_ROUTE_KEY = "lockgate.route"


def _route_template() -> str | None:
    rule = request.url_rule
    if rule is None:
        return None
    if rule.rule != ERROR_PATH:
        return rule.rule
    found: RequestVersion | None = request.environ.get(ENVIRON_KEY)
    if found is None:
        return None
    state: VersioningState = current_app.extensions["lockgate"]
    version = found.version
    asked = f"{state.prefix}/v{version.label.text}" if version is not None else state.prefix
    adapter = current_app.url_map.bind_to_environ(request.environ)
    for other in reversed(state.bundle.versions):
        base = f"{state.prefix}/v{other.label.text}"
        try:
            matched, _ = adapter.match(base + found.rest, method="GET", return_rule=True)
        except HTTPException:
            continue
        if matched.rule.startswith(base):
            return asked + matched.rule[len(base) :]
    return None


def handle_not_found(error: HTTPException) -> Any:
    """A 404 in one version for a route another version has: say which have it."""
    found: RequestVersion | None = request.environ.get(ENVIRON_KEY)
    version = None if found is None else found.version
    if found is not None and version is not None and found.error is None:
        state: VersioningState = current_app.extensions["lockgate"]
        others = versions_with_route(state, found.rest, exclude=version)
        if others:
            error = UnsupportedApiVersion(
                f"{found.rest} does not exist in API version {version.label}; "
                f"it exists in {', '.join(others)}",
                status=404,
                versions=others,
            )
    return handle_http_exception(error)


def versions_with_route(state: VersioningState, rest: str, *, exclude: Version) -> list[str]:
    """Labels of the served versions where ``rest`` is a route (any method)."""
    statuses = state.bundle.snapshot(state.clock()).statuses
    return [
        version.label.text
        for version in state.bundle.versions
        if version is not exclude
        and statuses[version.label] is not VersionStatus.RETIRED
        and route_exists(request.environ, f"{state.prefix}/v{version.label.text}{rest}")
    ]
