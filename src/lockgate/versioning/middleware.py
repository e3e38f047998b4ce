"""Where a request meets versioning: before routing, before the view, after it.

- :class:`VersionDispatcher` wraps ``app.wsgi_app``. For a path under the
  prefix that is not version-neutral it negotiates the version and rewrites
  ``/api/users`` to ``/api/v2/users``, so Flask routes, runs blueprint hooks
  and builds URLs exactly as if the client had written the version.
- a refused request (failed negotiation, retired version, brownout) is routed
  to :func:`raise_recorded`, so its problem goes through Flask's error
  handling; :func:`handle_not_found` turns a 404 into "this route exists in v2".
- :func:`add_version_headers` writes the version and lifecycle headers on
  every response of a versioned route, errors included, as the dispatcher
  passes the response's headers on to the server.

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
from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound

from ..errors import ApiVersionBrownout, ApiVersionError, ApiVersionSunset, UnsupportedApiVersion
from ..problems import ORIGINAL_PATH_KEY, handle_http_exception
from .headers import sunset_value
from .negotiation import negotiate
from .readers import Found, split_url_version
from .state import ENVIRON_KEY, Decision, RequestVersion, VersioningState
from .versions import Label, Version, VersionStatus

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

__all__ = [
    "ERROR_PATH",
    "VersionDispatcher",
    "add_version_headers",
    "handle_not_found",
    "raise_recorded",
    "route_template",
]

#: Where a refused request is routed so its problem goes through Flask's error handling.
ERROR_PATH = "/_lockgate/refused"


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
        segment, slash, below = path[state.segment_at :].partition("/")
        text = state.segments.get(segment)  # "v2" -> "2": a served version, spelt so
        if text is None and segment not in routes.resources:  # /api/V1.0/..., /api/versions
            return self.slow(environ, start_response, path, state)
        if path in routes.neutral_static or (
            routes.neutral_dynamic is not None and routes.is_neutral(path)
        ):
            return self.slow(environ, start_response, path, state)
        now = state.clock()
        snapshot = state.bundle.last
        if now < snapshot.since or (snapshot.until is not None and now >= snapshot.until):
            snapshot = state.bundle.snapshot(now)
        get = environ.get
        key: tuple[str | None, ...]
        if state.unrolled:
            first, second, third, fourth = state.key_names
            key = (text, get(first), get(second), get(third), get(fourth))
        else:
            key = (text, *map(get, state.key_names))
        decision: Decision | None = snapshot.decisions.get(key)
        if decision is None or decision.refused:
            return self.slow(environ, start_response, path, state)
        if text is None:  # /api/users: routed to /api/v2/users
            rest = path[state.prefix_length :]
            environ[ORIGINAL_PATH_KEY] = path
            environ["PATH_INFO"] = decision.path + rest
        else:
            rest = slash + below
        found = environ[ENVIRON_KEY] = RequestVersion(
            decision.negotiated, None, text is None, rest, snapshot
        )
        # The response's headers, by the kind of decision: a partial is the
        # cheapest way to hand start_response what it needs (cheaper than a closure).
        if decision.links:
            return self.wsgi_app(
                environ, partial(_start_versioned, start_response, state, found, environ, decision)
            )
        if decision.media_type is None and text is None:
            start = partial(_start_unversioned, start_response, decision.headers, state.vary)
            return self.wsgi_app(environ, start)
        if decision.media_type is not None:
            vary = state.vary if text is None else None
            start = partial(
                _start_amended, start_response, decision.headers, vary, decision.media_type
            )
            return self.wsgi_app(environ, start)
        return self.wsgi_app(environ, partial(_start_plain, start_response, decision.headers))

    def slow(
        self,
        environ: WSGIEnvironment,
        start_response: StartResponse,
        path: str,
        state: VersioningState,
    ) -> Iterable[bytes]:
        """Every request the fast path of :meth:`__call__` does not take."""
        found, decision = self.decide(environ, path, state)
        if found is None:
            return self.wsgi_app(environ, start_response)
        return self.wsgi_app(
            environ, partial(_start_versioned, start_response, state, found, environ, decision)
        )

    def decide(
        self, environ: WSGIEnvironment, path: str, state: VersioningState
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
        now = state.clock()
        snapshot = state.bundle.snapshot(now)
        key = (None if split is None else split[0], *map(environ.get, state.key_names))
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
            decision = state.remember(key, negotiated, snapshot)
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


def _start_plain(
    start_response: StartResponse,
    block: tuple[tuple[str, str], ...],
    status: str,
    headers: list[tuple[str, str]],
    exc_info: Any = None,
) -> Any:
    """``start_response`` of a versioned path: the decision's fixed headers."""
    headers.extend(block)
    return start_response(status, headers, exc_info)


def _start_unversioned(
    start_response: StartResponse,
    block: tuple[tuple[str, str], ...],
    vary: str,
    status: str,
    headers: list[tuple[str, str]],
    exc_info: Any = None,
) -> Any:
    """``start_response`` of an unversioned path: the fixed headers and ``Vary``."""
    for name, _ in headers:
        if len(name) == 4 and name.lower() == "vary":  # the view's own: extended
            _amend(headers, block, vary, None, None)
            break
    else:
        headers.extend(block)
        headers.append(("Vary", vary))
    return start_response(status, headers, exc_info)


def _start_amended(
    start_response: StartResponse,
    block: tuple[tuple[str, str], ...],
    vary: str | None,
    media_type: str | None,
    status: str,
    headers: list[tuple[str, str]],
    exc_info: Any = None,
) -> Any:
    """``start_response`` of an unversioned path or a vendor media type: see :func:`_amend`."""
    _amend(headers, block, vary, media_type, None)
    return start_response(status, headers, exc_info)


def _start_versioned(
    start_response: StartResponse,
    state: VersioningState,
    found: RequestVersion,
    environ: WSGIEnvironment,
    decision: Decision | None,
    status: str,
    headers: list[tuple[str, str]],
    exc_info: Any = None,
) -> Any:
    """``start_response`` of every other response: see :func:`add_version_headers`."""
    add_version_headers(state, found, environ, headers, decision)
    return start_response(status, headers, exc_info)


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


def add_version_headers(
    state: VersioningState,
    found: RequestVersion,
    environ: WSGIEnvironment,
    headers: list[tuple[str, str]],
    decision: Decision | None = None,
) -> None:
    """Write ``API-Version``, the version lists, ``Vary`` and lifecycle headers."""
    vary = state.vary if found.unversioned else None
    negotiated = found.negotiated
    if decision is None or negotiated is None:  # refused before a version was chosen
        block = state.header_block(found.snapshot, None)
        _amend(headers, block, vary, None, None)
        return
    link = None
    if decision.links:
        successor = None
        if decision.successor is not None:
            # A route of this version seen before: whether the successor has it
            # is remembered (see successor_url).
            flask_request = environ.get("werkzeug.request")
            rule = None if flask_request is None else flask_request.url_rule
            has_route = None if rule is None else state.successor_rules.get(rule.rule)
            if has_route is None:
                successor = successor_url(state, negotiated.version, found.rest, environ)
            elif has_route:
                successor = decision.successor + found.rest
        if successor is None:
            link = decision.policy
        else:
            link = f'{decision.link_head}<{successor}>; rel="successor-version"'
    _amend(headers, decision.headers, vary, decision.media_type, link)


def _amend(
    headers: list[tuple[str, str]],
    block: tuple[tuple[str, str], ...],
    vary: str | None,
    media_type: str | None,
    link: str | None,
) -> None:
    """Add ``block``, ``Vary`` and ``Link`` to the view's ``headers``.

    The view's own ``Vary`` and ``Link`` are extended, not repeated; a JSON
    ``Content-Type`` becomes the vendor media type the client asked in (a
    problem stays problem+json). ``block`` never holds any of those three.
    """
    if vary or media_type or link:
        # One pass over the view's own headers; each check is ordered by cost
        # (the length, Flask's own spelling, then the lowered name).
        for name, value in headers:
            size = len(name)
            if size == 12:
                if (
                    media_type
                    and (name == "Content-Type" or name.lower() == "content-type")
                    and (value == "application/json" or value.startswith("application/json"))
                ):
                    headers[headers.index((name, value))] = (name, media_type)
            elif size == 4:
                lowered = name.lower()
                if lowered == "vary" and vary:
                    headers[headers.index((name, value))] = (name, f"{value}, {vary}")
                    vary = None
                elif lowered == "link" and link:
                    headers[headers.index((name, value))] = (name, f"{value}, {link}")
                    link = None
    headers.extend(block)
    if vary:
        headers.append(("Vary", vary))
    if link:
        headers.append(("Link", link))


def successor_url(
    state: VersioningState, version: Version, rest: str, environ: WSGIEnvironment
) -> str | None:
    """The same route in the successor version, when the successor has it."""
    prefixes = state.successor_prefixes(version)
    if prefixes is None:
        return None
    own, target = prefixes
    # Flask's request is in the environ: cheaper than the context-local proxy.
    flask_request = environ.get("werkzeug.request")
    rule = None if flask_request is None else flask_request.url_rule
    # Only rules of this version are remembered (they start with its prefix).
    has_route = None if rule is None else state.successor_rules.get(rule.rule)
    if has_route is None:
        if rule is not None and rule.rule.startswith(own) and state.routes is not None:
            assert version.successor is not None
            has_route = rule.rule[len(own) :] in state.routes.templates[version.successor]
            state.successor_rules[rule.rule] = has_route
        else:  # no versioned rule matched (a refused or unknown route): ask the URL map
            has_route = _route_exists(state, environ, target + rest)
    return target + rest if has_route else None


def versions_with_route(state: VersioningState, rest: str, *, exclude: Version) -> list[str]:
    """Labels of the served versions where ``rest`` is a route (any method)."""
    statuses = state.bundle.snapshot(state.clock()).statuses
    return [
        version.label.text
        for version in state.bundle.versions
        if version is not exclude
        and statuses[version.label] is not VersionStatus.RETIRED
        and _route_exists(state, request.environ, f"{state.prefix}/v{version.label.text}{rest}")
    ]


def _route_exists(state: VersioningState, environ: WSGIEnvironment, path: str) -> bool:
    """Whether ``path`` matches a rule of the app, with any method."""
    adapter = current_app.url_map.bind_to_environ(environ)
    try:
        adapter.match(path, method=environ.get("REQUEST_METHOD", "GET"))
    except MethodNotAllowed:
        return True
    except HTTPException:
        return False
    return True
