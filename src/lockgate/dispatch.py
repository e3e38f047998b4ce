"""Where a request meets versioning: before routing, before the view, after it.

- :class:`VersionDispatcher` wraps ``app.wsgi_app``. For a path under the
  prefix that is not version-neutral it negotiates the version and rewrites
  ``/api/users`` to ``/api/v2/users``, so Flask routes, runs blueprint hooks
  and builds URLs exactly as if the client had written the version.
- :func:`before_request` turns a failed negotiation, a retired version or a
  brownout into its problem, and a 404 into "this route exists in v2".
- :func:`after_request` writes the version and lifecycle headers on every
  response of a versioned route, errors included.

Nothing here may raise outside Flask's error handling: the dispatcher only
records its decision in the WSGI environ.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import TYPE_CHECKING

from flask import Flask, Response, current_app, request
from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound
from werkzeug.wrappers import Request

from .errors import ApiVersionBrownout, ApiVersionError, ApiVersionSunset, UnsupportedApiVersion
from .lifecycle import deprecation_value, lifecycle_links, sunset_value
from .negotiation import negotiate
from .readers import Found, split_url_version
from .state import ENVIRON_KEY, RequestVersion, VersioningState, get_state
from .versions import Version, VersionStatus

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

__all__ = ["VersionDispatcher", "after_request", "before_request"]


class VersionDispatcher:
    """WSGI middleware that negotiates the version and rewrites unversioned paths."""

    def __init__(self, wsgi_app: WSGIApplication, app: Flask) -> None:
        self.wsgi_app = wsgi_app
        self.app = app

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        path: str = environ.get("PATH_INFO") or "/"
        state: VersioningState = self.app.extensions["lockgate"]
        prefix = state.prefix
        if path.startswith(prefix) and (len(path) == len(prefix) or path[len(prefix)] == "/"):
            self.decide(environ, path, state)
        return self.wsgi_app(environ, start_response)

    def decide(self, environ: WSGIEnvironment, path: str, state: VersioningState) -> None:
        routes = state.route_index(self.app)
        if routes.is_neutral(path):
            return
        request = Request(environ, populate_request=False, shallow=True)
        found: list[Found] = []
        for reader in state.readers:
            found.extend(reader.read(request))
        split = split_url_version(path, state.prefix)
        rest = path[len(state.prefix) :] if split is None else split[1]
        try:
            negotiated = negotiate(found, state.bundle, state.bundle.snapshot(state.clock()))
        except ApiVersionError as error:
            environ[ENVIRON_KEY] = RequestVersion(None, error, split is None, rest)
            return
        label = negotiated.version.label.text
        if split is None or split[0] != label:
            environ["PATH_INFO"] = f"{state.prefix}/v{label}{rest}"
        environ[ENVIRON_KEY] = RequestVersion(negotiated, None, split is None, rest)


def before_request() -> None:
    """Answer for versions that cannot be served, before any view runs."""
    found: RequestVersion | None = request.environ.get(ENVIRON_KEY)
    if found is None:
        return
    if found.error is not None:
        raise found.error
    state = get_state()
    version = found.version
    assert version is not None
    now = state.clock()
    status = state.bundle.snapshot(now).statuses[version.label]
    if status is VersionStatus.RETIRED:
        assert version.sunset is not None
        raise ApiVersionSunset(
            f"API version {version.label} was retired on {sunset_value(version.sunset)}"
            + (f"; use version {version.successor}" if version.successor else ""),
            sunset=version.sunset.isoformat().replace("+00:00", "Z"),
            successor=None if version.successor is None else version.successor.text,
        )
    window = version.brownout(now)
    if window is not None:
        seconds = max(1, math.ceil((window[1] - now).total_seconds()))
        raise ApiVersionBrownout(
            f"API version {version.label} is in a scheduled brownout until "
            f"{sunset_value(window[1])} ahead of its sunset; migrate to version "
            f"{version.successor or 'a newer version'}",
            headers={"Retry-After": str(seconds)},
            retry_after=seconds,
        )
    if isinstance(request.routing_exception, NotFound):
        others = versions_with_route(state, found.rest, exclude=version)
        if others:
            raise UnsupportedApiVersion(
                f"{found.rest} does not exist in API version {version.label}; "
                f"it exists in {', '.join(others)}",
                status=404,
                versions=others,
            )


def after_request(response: Response) -> Response:
    """Write ``API-Version``, the version lists, ``Vary`` and lifecycle headers."""
    found: RequestVersion | None = request.environ.get(ENVIRON_KEY)
    if found is None:
        return response
    state = get_state()
    now = state.clock()
    snapshot = state.bundle.snapshot(now)
    headers = response.headers
    if snapshot.supported_header:
        headers["API-Supported-Versions"] = snapshot.supported_header
    if snapshot.deprecated_header:
        headers["API-Deprecated-Versions"] = snapshot.deprecated_header
    if found.unversioned:
        response.vary.add("Accept")
        response.vary.add(state.header)
    negotiated = found.negotiated
    if negotiated is None:
        return response
    version = negotiated.version
    status = snapshot.statuses[version.label]
    if status is not VersionStatus.RETIRED:
        headers["API-Version"] = version.label.text
        if negotiated.media_type and response.mimetype == "application/json":
            headers["Content-Type"] = negotiated.media_type.format(version.label.text)
    if version.deprecated is not None:
        headers["Deprecation"] = deprecation_value(version.deprecated)
    if version.sunset is not None:
        headers["Sunset"] = sunset_value(version.sunset)
    if status in (VersionStatus.DEPRECATED, VersionStatus.RETIRED) or version.sunset:
        links = lifecycle_links(version, successor_url(state, version, found.rest))
        if links:
            existing = headers.get("Link")
            headers["Link"] = ", ".join([existing, *links] if existing else links)
    return response


def successor_url(state: VersioningState, version: Version, rest: str) -> str | None:
    """The same route in the successor version, when the successor has it."""
    if version.successor is None:
        return None
    successor = state.bundle.get(version.successor)
    if successor is None:
        return None
    rule = request.url_rule
    routes = state.route_index(current_app._get_current_object())  # type: ignore[attr-defined]
    if rule is not None and rule.rule.startswith(f"{state.prefix}/v{version.label.text}/"):
        template = rule.rule[len(f"{state.prefix}/v{version.label.text}") :]
        if template not in routes.templates.get(successor.label, ()):
            return None
    elif not route_exists(f"{state.prefix}/v{successor.label.text}{rest}"):
        return None
    return f"{state.prefix}/v{successor.label.text}{rest}"


def versions_with_route(state: VersioningState, rest: str, *, exclude: Version) -> list[str]:
    """Labels of the served versions where ``rest`` is a route (any method)."""
    statuses = state.bundle.snapshot(state.clock()).statuses
    return [
        version.label.text
        for version in state.bundle.versions
        if version is not exclude
        and statuses[version.label] is not VersionStatus.RETIRED
        and route_exists(f"{state.prefix}/v{version.label.text}{rest}")
    ]


def route_exists(path: str) -> bool:
    """Whether ``path`` matches a rule of the current app, with any method."""
    adapter = current_app.url_map.bind_to_environ(request.environ)
    try:
        adapter.match(path, method=request.method)
    except MethodNotAllowed:
        return True
    except HTTPException:
        return False
    return True
