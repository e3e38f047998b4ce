"""The Flask extension: :class:`Auth`, :func:`require_scope`, :func:`current_client`.

A request's token is verified the first time anything asks who is calling
(:func:`current_client`: a scope check, the rate limiter, the usage report),
once per request, so no hook has to run in a particular order. Answers
follow RFC 6750: 401 with ``WWW-Authenticate: Bearer error="invalid_token"``
for a missing or bad token, 403 ``insufficient_scope`` naming the scope;
both problem+json.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from functools import wraps
from typing import Any, TypeVar
from urllib.parse import urlsplit

from flask import Blueprint, Flask, current_app, request

from ..config import apply_settings
from ..problems import Problem, handle_http_exception
from .verify import Client, FileLoader, InvalidToken, TokenVerifier, url_loader

__all__ = [
    "Auth",
    "authenticated",
    "check_scope",
    "current_client",
    "require_scope",
    "required_scopes",
    "security_scheme",
]

F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")
_NONE = object()
#: Every config key, with its default.
DEFAULTS: dict[str, Any] = {
    "LOCKGATE_AUTH_ISSUER": None,
    "LOCKGATE_AUTH_AUDIENCE": None,
    "LOCKGATE_AUTH_JWKS_URL": None,
    "LOCKGATE_AUTH_JWKS_FILE": None,
    "LOCKGATE_AUTH_LEEWAY": 10,
    "LOCKGATE_AUTH_REALM": None,
    "LOCKGATE_AUTH_TOKEN_URL": None,
}
#: On a view guarded by :func:`require_scope`: ``[(methods or None, scope)]``.
SCOPES_ATTR = "_lockgate_scopes"
#: Per app: ``[(blueprint name, methods or None, scope)]`` of guarded blueprints.
_BLUEPRINT_SCOPES = "lockgate.auth.blueprint_scopes"


class Auth:
    """Verify the bearer tokens of one issuer, for one audience.

    :param issuer: the ``iss`` every token must carry.
    :param audience: the ``aud`` this service accepts.
    :param jwks_url: where the issuer publishes its keys; or ``jwks`` (a
        callable returning a JWKS) for an issuer in the same process.
    """

    def __init__(
        self,
        app: Flask | None = None,
        *,
        issuer: str | None = None,
        audience: str | None = None,
        jwks_url: str | None = None,
        jwks: Callable[[], Mapping[str, Any]] | None = None,
    ) -> None:
        self.options = {"issuer": issuer, "audience": audience, "jwks_url": jwks_url}
        self.jwks = jwks
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        """Settings: arguments > ``app.config`` > ``LOCKGATE_AUTH_*`` environment >
        defaults. Reads ``LOCKGATE_AUTH_ISSUER``, ``LOCKGATE_AUTH_AUDIENCE`` (default the
        service name), ``LOCKGATE_AUTH_JWKS_URL`` (or ``LOCKGATE_AUTH_JWKS_FILE``)
        ``LOCKGATE_AUTH_LEEWAY`` (seconds, at most 30) and ``LOCKGATE_AUTH_TOKEN_URL``
        (for the docs' Authorize button; default ``<issuer>/oauth/token``)."""
        if "lockgate.auth" in app.extensions:
            raise RuntimeError("lockgate.Auth is already registered on this app")
        apply_settings(app, DEFAULTS)
        issuer = self.options["issuer"] or app.config["LOCKGATE_AUTH_ISSUER"]
        audience = (
            self.options["audience"]
            or app.config["LOCKGATE_AUTH_AUDIENCE"]
            or app.config.get("LOCKGATE_SERVICE")
            or app.name
        )
        if not issuer:
            raise RuntimeError("lockgate.Auth needs an issuer (LOCKGATE_AUTH_ISSUER)")
        load = self.jwks
        if load is None:
            url = self.options["jwks_url"] or app.config["LOCKGATE_AUTH_JWKS_URL"]
            file = app.config["LOCKGATE_AUTH_JWKS_FILE"]
            if url:
                load = url_loader(str(url))
            elif file:
                load = FileLoader(str(file))
            else:
                load = url_loader(f"{str(issuer).rstrip('/')}/.well-known/jwks.json")
        # Its 401 and 403 are problem+json even on an app without versioning.
        app.register_error_handler(Problem, handle_http_exception)
        app.extensions["lockgate.auth"] = TokenVerifier(
            issuer=str(issuer),
            audience=str(audience),
            load_jwks=load,
            leeway=int(app.config["LOCKGATE_AUTH_LEEWAY"]),
        )
        app.config["LOCKGATE_AUTH_TOKEN_URL"] = (
            app.config["LOCKGATE_AUTH_TOKEN_URL"] or f"{str(issuer).rstrip('/')}/oauth/token"
        )


#: Where a request's verdict is kept: its WSGI environ, which belongs to that
#: request alone (``g`` lives as long as the app context, which a test or a
#: script may hold across requests).
_VERDICT = "lockgate.auth.verdict"


def _bearer(environ: Mapping[str, Any]) -> str | None:
    header: str | None = environ.get("HTTP_AUTHORIZATION")
    if header is None:
        return None
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer":
        raise InvalidToken("the Authorization header is not a Bearer token")
    return token.strip()


def _identify() -> tuple[Client | None, str | None]:
    """This request's client and, for a bad token, why (once per request).

    On the path of every guarded request: one lookup through ``request``'s
    proxy, then plain dictionaries.
    """
    environ = request.environ
    found = environ.get(_VERDICT, _NONE)
    if found is not _NONE:
        known: tuple[Client | None, str | None] = found
        return known
    verifier: TokenVerifier | None = current_app.extensions.get("lockgate.auth")
    result: tuple[Client | None, str | None] = (None, None)
    if verifier is not None:
        try:
            token = _bearer(environ)
            if token is not None:
                result = (verifier.verify(token), None)
        except InvalidToken as error:
            result = (None, str(error))
    environ[_VERDICT] = result
    return result


def current_client() -> Client | None:
    """The verified client of this request; ``None`` without a valid token."""
    return _identify()[0]


def _unauthorized(reason: str) -> Problem:
    challenge = f'Bearer error="invalid_token", error_description="{_quote(reason)}"'
    return Problem(
        401,
        reason,
        code="invalid_token",
        title="Invalid token",
        headers={"WWW-Authenticate": challenge},
    )


def _forbidden(scope: str) -> Problem:
    return Problem(
        403,
        f"the token lacks the scope {scope}",
        code="insufficient_scope",
        title="Insufficient scope",
        headers={"WWW-Authenticate": f'Bearer error="insufficient_scope", scope="{scope}"'},
        scope=scope,
    )


def _quote(text: str) -> str:
    return text.replace("\\", "").replace('"', "'")[:200]


def authenticated() -> Client:
    """The client of this request, whatever its scopes (for resources that
    are checked per object, like a job and who made it).

    :raises Problem: 401 without a valid token.
    """
    client, reason = _identify()
    if client is None:
        raise _unauthorized(reason or "a bearer token is required")
    return client


def check_scope(scope: str) -> Client:
    """The client of this request if it holds ``scope``.

    :raises Problem: 401 without a valid token, 403 without the scope.
    """
    client, reason = _identify()
    if client is None:
        raise _unauthorized(reason or "a bearer token is required")
    if scope not in client.scopes:
        raise _forbidden(scope)
    return client


#: On a guarded blueprint: its one guard's ``{method or None: [scopes]}``.
_GUARD_ATTR = "_lockgate_scope_guard"


def require_scope(scope: str, *, methods: Iterable[str] | None = None) -> Callable[[T], T]:
    """Require ``scope`` of a view, or of every view of a blueprint (for
    ``methods`` only, when given: reads and writes can need different scopes).

    A blueprint guarded several times (reads and writes) gets one
    ``before_request`` function that looks the method up once.
    """
    chosen = None if methods is None else frozenset(m.upper() for m in methods)

    def decorate(target: T) -> T:
        if isinstance(target, Blueprint):
            _guard_blueprint(target, chosen, scope)
            return target

        view: Callable[..., Any] = target  # type: ignore[assignment]

        @wraps(view)
        def guarded(*args: Any, **kwargs: Any) -> Any:
            if chosen is None or request.method in chosen:
                check_scope(scope)
            return view(*args, **kwargs)

        setattr(guarded, SCOPES_ATTR, [*getattr(view, SCOPES_ATTR, []), (chosen, scope)])
        return guarded  # type: ignore[return-value]

    return decorate


def _guard_blueprint(bp: Blueprint, methods: frozenset[str] | None, scope: str) -> None:
    table: dict[str | None, list[str]] | None = getattr(bp, _GUARD_ATTR, None)
    if table is None:
        table = {}
        setattr(bp, _GUARD_ATTR, table)
        everyone: list[str] = table.setdefault(None, [])

        def guard() -> None:
            for needed in (*everyone, *table.get(request.method, ())):
                check_scope(needed)

        bp.before_request(guard)
    for method in [None] if methods is None else sorted(methods):
        table.setdefault(method, []).append(scope)
    # Each registration's name, for the OpenAPI documents' ``security``.
    bp.record(
        lambda setup: setup.app.extensions.setdefault(_BLUEPRINT_SCOPES, []).append(
            (f"{setup.name_prefix}.{setup.name}".lstrip("."), methods, scope)
        )
    )


def required_scopes(app: Flask, endpoint: str, method: str) -> list[str]:
    """The scopes :func:`require_scope` asks of ``method`` on ``endpoint``
    (for the OpenAPI documents' ``security``)."""
    found = []
    view = app.view_functions.get(endpoint)
    for methods, scope in getattr(view, SCOPES_ATTR, ()):
        if methods is None or method in methods:
            found.append(scope)
    for name, methods, scope in app.extensions.get(_BLUEPRINT_SCOPES, ()):
        if endpoint.startswith(name + ".") and (methods is None or method in methods):
            found.append(scope)
    return sorted(set(found))


def security_scheme(app: Flask) -> dict[str, Any] | None:
    """The OAuth 2.0 client credentials scheme of ``app``'s tokens (OpenAPI's
    ``securitySchemes`` entry: Swagger UI's Authorize button), or ``None``
    without :class:`Auth`."""
    if "lockgate.auth" not in app.extensions:
        return None
    scopes = {scope for _, _, scope in app.extensions.get(_BLUEPRINT_SCOPES, ())}
    for view in app.view_functions.values():
        scopes.update(scope for _, scope in getattr(view, SCOPES_ATTR, ()))
    token_url = str(app.config["LOCKGATE_AUTH_TOKEN_URL"])
    issuer = urlsplit(app.extensions["lockgate.auth"].issuer)
    found = urlsplit(token_url)
    if (found.scheme, found.netloc) == (issuer.scheme, issuer.netloc):
        # The issuer's own origin: a path, so the page's origin is used
        # (docs opened at localhost or behind a gateway post to their own host).
        token_url = found.path
    return {
        "type": "oauth2",
        "description": "OAuth 2.0 client credentials: an access token from the auth service.",
        "flows": {
            "clientCredentials": {
                "tokenUrl": token_url,
                "scopes": {scope: f"the {scope} scope" for scope in sorted(scopes)},
            }
        },
    }
