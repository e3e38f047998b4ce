"""Response hardening: allowed hosts, relative redirects, ``nosniff`` everywhere.

- ``LOCKGATE_TRUSTED_HOSTS`` (a list, or one string of names separated by
  commas or spaces) becomes Flask's ``TRUSTED_HOSTS``: a request whose
  ``Host`` is not in it is a 400 problem+json before any view runs. A name
  starting with ``.`` allows its subdomains; ports are ignored.
- The redirects Werkzeug's router makes by itself (``//`` merged to ``/``, a
  missing trailing slash) are answered as a bare ``308`` with a *relative*
  ``Location`` and no body. Werkzeug would build an absolute ``Location`` from
  the client's ``Host`` header (``Host: evil.example`` sends the client on to
  ``http://evil.example/...``) and describe it in an HTML page; a relative
  reference resolves against the URL the client already used, so no host the
  fleet did not choose can appear in it. 308 keeps the method and the body, as
  Werkzeug's own redirect does.
- Every response leaving the app carries ``X-Content-Type-Options: nosniff``
  (errors, 404s, probes, docs and metrics too): it is added by WSGI
  middleware around the whole app, so no response path can miss it.

Errors the WSGI server writes before the app sees a request (a 400 for a
malformed request line, 414, 431) are the server's own pages; the gateway
turns those into problem+json at the edge.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from flask import Flask, Response, current_app, request
from werkzeug.routing import RequestRedirect

from .settings import settle

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

__all__ = ["NoSniff", "Security", "relative_location", "trusted_hosts"]

NOSNIFF = ("X-Content-Type-Options", "nosniff")


class NoSniff:
    """WSGI middleware: ``X-Content-Type-Options: nosniff`` on every response
    that does not already say it."""

    def __init__(self, app: WSGIApplication) -> None:
        self.app = app

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            if not any(name.lower() == "x-content-type-options" for name, _ in headers):
                headers.append(NOSNIFF)
            return start_response(status, headers, exc_info)

        return self.app(environ, start)


def trusted_hosts(value: object) -> list[str] | None:
    """``LOCKGATE_TRUSTED_HOSTS`` as Flask's ``TRUSTED_HOSTS``: ``None`` (any
    host) for ``None``; a string is split at commas and whitespace.

    :raises ValueError: the value is neither a string nor a list of strings,
        or names no host at all (which would refuse every request).
    """
    if value is None:
        return None
    if isinstance(value, str):
        hosts = value.replace(",", " ").split()
    elif isinstance(value, list | tuple) and all(isinstance(host, str) for host in value):
        hosts = [host.strip() for host in value if host.strip()]
    else:
        raise ValueError(f"LOCKGATE_TRUSTED_HOSTS must be host names, not {value!r}")
    if not hosts:
        raise ValueError("LOCKGATE_TRUSTED_HOSTS names no host; leave it unset to allow any")
    return hosts


def relative_location(url: str) -> str:
    """The path and query of ``url``: what a redirect may say without naming a host."""
    parts = urlsplit(url)
    path = parts.path or "/"
    return f"{path}?{parts.query}" if parts.query else path


def _relative_redirect(response: Response) -> Response:
    """Werkzeug's routing redirect, as a bare 308 with a relative ``Location``."""
    redirect = request.routing_exception
    if not isinstance(redirect, RequestRedirect):
        return response
    answer = current_app.response_class(status=redirect.code)
    # A redirect has no content; Flask would label the empty body text/html.
    del answer.headers["Content-Type"]
    answer.headers["Location"] = relative_location(redirect.new_url)
    for name, value in response.headers:
        if name not in ("Location", "Content-Type", "Content-Length"):
            answer.headers.add(name, value)
    return answer


class Security:
    """Allowed hosts, relative router redirects and ``nosniff`` on one app."""

    def __init__(self, app: Flask | None = None) -> None:
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        """Reads ``LOCKGATE_TRUSTED_HOSTS`` (``None``: any host).

        :raises RuntimeError: already registered on ``app``.
        :raises ValueError: ``LOCKGATE_TRUSTED_HOSTS`` is not a list of hosts.
        """
        if "lockgate.security" in app.extensions:
            raise RuntimeError("lockgate.Security is already registered on this app")
        settle(app)
        app.extensions["lockgate.security"] = self
        hosts = trusted_hosts(app.config["LOCKGATE_TRUSTED_HOSTS"])
        if hosts is not None:
            app.config["TRUSTED_HOSTS"] = hosts
        # First of the after-request hooks to run (they run in reverse), so
        # the others (request id, headers, log line) see the final response.
        app.after_request_funcs.setdefault(None, []).append(_relative_redirect)
        app.wsgi_app = NoSniff(app.wsgi_app)  # type: ignore[method-assign]
