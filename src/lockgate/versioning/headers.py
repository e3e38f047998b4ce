"""The version headers of a response: the ``start_response`` wrappers that add
them (the field values are in :mod:`.fields`).

The dispatcher wraps ``start_response`` with one of the ``start_*`` functions
below, chosen by the request's :class:`~.state.Decision` and bound with
:func:`functools.partial` (cheaper than a closure): a served version's fixed
block of headers, plus ``Vary`` on an unversioned path, the vendor media type
in a JSON ``Content-Type``, and ``Link`` on a deprecated or sunset version.
The view's own ``Vary`` and ``Link`` are extended, never repeated.
"""

from __future__ import annotations

import re
from functools import partial
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from flask import current_app
from werkzeug.exceptions import HTTPException, MethodNotAllowed

from ..views import SERVED_ATTR
from .state import Decision, RequestVersion, VersioningState
from .versions import Version

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment
    from werkzeug.routing import Rule

__all__ = [
    "route_exists",
    "start_amended",
    "start_lifecycle",
    "start_media",
    "start_plain",
    "start_unversioned",
    "starter",
    "successor_url",
]

Headers = list[tuple[str, str]]
Block = tuple[tuple[str, str], ...]


def start_plain(
    start_response: StartResponse,
    block: Block,
    status: str,
    headers: Headers,
    exc_info: Any = None,
) -> Any:
    """A versioned path's response: the decision's fixed headers only."""
    headers.extend(block)
    return start_response(status, headers, exc_info)


def start_unversioned(
    start_response: StartResponse,
    decision: Decision,
    vary: str,
    status: str,
    headers: Headers,
    exc_info: Any = None,
) -> Any:
    """An unversioned path's response: the fixed headers and ``Vary``."""
    for name, _ in headers:
        if len(name) == 4 and name.lower() == "vary":  # the view's own: extended
            block = decision.headers
            return start_amended(start_response, block, vary, None, None, status, headers, exc_info)
    headers.extend(decision.vary_headers)
    return start_response(status, headers, exc_info)


def start_media(
    start_response: StartResponse,
    decision: Decision,
    media_type: str,
    vary: str | None,
    status: str,
    headers: Headers,
    exc_info: Any = None,
) -> Any:
    """A response to a vendor media type: that type in a JSON ``Content-Type``,
    the fixed headers, and ``Vary`` when the path is unversioned."""
    for name, value in headers:
        size = len(name)
        if size == 12:
            if (name == "Content-Type" or name.lower() == "content-type") and (
                value == "application/json" or value.startswith("application/json")
            ):
                headers[headers.index((name, value))] = (name, media_type)
        elif size == 4 and vary and name.lower() == "vary":  # the view's own: extended
            block = decision.headers
            return start_amended(
                start_response, block, vary, media_type, None, status, headers, exc_info
            )
    headers.extend(decision.headers if vary is None else decision.vary_headers)
    return start_response(status, headers, exc_info)


def start_amended(
    start_response: StartResponse,
    block: Block,
    vary: str | None,
    media_type: str | None,
    link: str | None,
    status: str,
    headers: Headers,
    exc_info: Any = None,
) -> Any:
    """Any response: ``block``, and ``Vary``, ``Content-Type`` and ``Link`` when given.

    A JSON ``Content-Type`` becomes ``media_type`` (a problem stays
    problem+json). ``block`` never holds any of those three headers.
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
    return start_response(status, headers, exc_info)


def start_lifecycle(
    start_response: StartResponse,
    state: VersioningState,
    found: RequestVersion,
    environ: WSGIEnvironment,
    decision: Decision,
    vary: str | None,
    status: str,
    headers: Headers,
    exc_info: Any = None,
) -> Any:
    """A deprecated or sunset version's response: ``Link`` too, with its policy
    and the same route in the successor version when that has it.

    Called once the view has run, so the matched rule is known.
    """
    # The successor's link depends on the matched rule only (and the path
    # below the version): remembered per rule, on the decision.
    flask_request = environ.get("werkzeug.request")
    rule = None if flask_request is None else flask_request.url_rule
    head = None if rule is None else decision.link_heads.get(rule.rule)
    if head is None:  # first seen, or no rule matched (a refused or unknown route)
        link = _lifecycle_link(state, found, environ, decision, rule)
    elif head:
        link = f'{head}{uri_path(found.rest)}>; rel="successor-version"'
    else:  # the successor has no such route: the policy alone
        link = decision.policy
    block, media_type = decision.headers, decision.media_type
    if link and vary is None and media_type is None:  # the common case: one header to add
        for name, _ in headers:
            if len(name) == 4 and name.lower() == "link":  # the view's own: extended
                break
        else:
            headers.extend(block)
            headers.append(("Link", link))
            return start_response(status, headers, exc_info)
    return start_amended(start_response, block, vary, media_type, link, status, headers, exc_info)


def _lifecycle_link(
    state: VersioningState,
    found: RequestVersion,
    environ: WSGIEnvironment,
    decision: Decision,
    rule: Rule | None,
) -> str | None:
    """``Link`` of a deprecated or sunset version: its policy, and the same route
    in the successor version when that has it. Remembers the answer per rule."""
    version = decision.negotiated.version
    successor = successor_url(state, version, found.rest, environ)
    if rule is not None and rule.rule.startswith(f"{state.versioned}{version.label.text}"):
        # "" when the successor has no such route: then the policy alone.
        own = decision.link_heads
        own[rule.rule] = "" if successor is None else f"{decision.link_head}<{decision.successor}"
    if successor is None:
        return decision.policy
    return f'{decision.link_head}<{successor}>; rel="successor-version"'


def starter(
    start_response: StartResponse,
    state: VersioningState,
    found: RequestVersion,
    environ: WSGIEnvironment,
    decision: Decision | None,
) -> StartResponse:
    """The wrapper of ``start_response`` for ``found`` (the dispatcher inlines this)."""
    vary = state.vary if found.unversioned else None
    if decision is None or found.negotiated is None:  # refused before a version was chosen
        block = state.header_block(found.snapshot, None)
        return partial(start_amended, start_response, block, vary, None, None)
    if decision.links:
        return partial(start_lifecycle, start_response, state, found, environ, decision, vary)
    return partial(start_amended, start_response, decision.headers, vary, decision.media_type, None)


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
            has_route = route_exists(environ, target + rest)
    return target + uri_path(rest) if has_route else None


#: A path already fit for a URI reference (RFC 3986 pchar and "/"): the common case.
_URI_PATH = re.compile(r"[A-Za-z0-9\-._~!$&'()*+,;=:@/]*")


def uri_path(rest: str) -> str:
    """The request path below the version, fit for a ``Link`` target: a WSGI
    path is decoded (``%0A`` is a newline there), and a header carrying it as
    is would be split; anything outside RFC 3986's path characters is
    percent-encoded again (from the WSGI string's latin-1 bytes)."""
    if _URI_PATH.fullmatch(rest):
        return rest
    return quote(rest.encode("latin-1", "replace"), safe="/!$&'()*+,;=:@-._~")


def route_exists(environ: WSGIEnvironment, path: str) -> bool:
    """Whether ``path`` matches a rule of the current app, with any method,
    and its version serves this request's method there (a version change may
    have removed it, or not added it yet)."""
    adapter = current_app.url_map.bind_to_environ(environ)
    method = environ.get("REQUEST_METHOD", "GET")
    try:
        rule, _ = adapter.match(path, method=method, return_rule=True)
    except MethodNotAllowed:
        return True
    except HTTPException:
        return False
    served = getattr(current_app.view_functions.get(rule.endpoint), SERVED_ATTR, None)
    return served is None or ("GET" if method == "HEAD" else method) in served
