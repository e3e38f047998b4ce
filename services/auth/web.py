"""The authorization server's endpoints: the token (RFC 6749 §4.4), the JWKS, RFC 8414
metadata, and ``/oauth/verify`` for a gateway's ``auth_request``.

Errors of the token endpoint are RFC 6749 §5.2 JSON (``{"error": ...}``),
not problem+json: OAuth clients parse that shape. Every token answer is
``Cache-Control: no-store``.
"""

from __future__ import annotations

import base64
import binascii
import time
import uuid
from typing import Any
from urllib.parse import unquote_plus

import jwt
from flask import Blueprint, Response, current_app, jsonify, request

from lockgate.auth import KeyStore
from lockgate.runtime import refund, spend

from .store import ClientStore

bp = Blueprint("oauth", __name__)


def _store() -> ClientStore:
    found: ClientStore = current_app.extensions["auth.clients"]
    return found


def _keys() -> KeyStore:
    found: KeyStore = current_app.extensions["auth.keys"]
    return found


def _error(error: str, description: str, status: int = 400) -> Response:
    response = jsonify(error=error, error_description=description)
    response.status_code = status
    response.headers["Cache-Control"] = "no-store"
    response.headers["Pragma"] = "no-cache"
    if status == 401:
        response.headers["WWW-Authenticate"] = 'Basic realm="lockgate", charset="UTF-8"'
    return response


def _credentials() -> tuple[str, str] | Response:
    """The client's id and secret, from HTTP Basic (RFC 6749 §2.3.1) or the form."""
    header = request.headers.get("Authorization")
    form_id, form_secret = request.form.get("client_id"), request.form.get("client_secret")
    if header is not None:
        if form_secret is not None:
            return _error("invalid_request", "use one client authentication method, not two")
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "basic":
            return _error("invalid_client", "client authentication must be HTTP Basic", 401)
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return _error("invalid_client", "malformed Basic credentials", 401)
        client_id, colon, secret = decoded.partition(":")
        if not colon:
            return _error("invalid_client", "malformed Basic credentials", 401)
        return unquote_plus(client_id), unquote_plus(secret)
    if form_id is None or form_secret is None:
        return _error("invalid_client", "client authentication is required", 401)
    return form_id, form_secret


@bp.after_request
def no_store(response: Response) -> Response:
    """Every answer of the token endpoint, its 429 included, is never cached."""
    if request.endpoint == "oauth.token":
        response.headers["Cache-Control"] = "no-store"
        response.headers["Pragma"] = "no-cache"
    return response


def audiences(scopes: frozenset[str], known: frozenset[str]) -> list[str]:
    """The services a token is for (its ``aud``): every resource service of
    the fleet (the prefixes of the scopes it knows, ``ops`` aside), so a
    service refuses a token it was not meant for with 403 naming the scope it
    lacks (RFC 6750 ``insufficient_scope``), and a token from elsewhere for
    no audience of ours with 401."""
    return sorted({scope.partition(":")[0] for scope in known} - {"ops"})


@bp.post("/oauth/token")
def token() -> Response:
    """Issue an access token for the client credentials grant."""
    config = current_app.config
    # Brute force: every try is counted per address and per client id before
    # any secret is checked (a scrypt each), so parallel tries cannot slip past
    # one look; a try that succeeds is given back, so a client that knows its
    # secret spends nothing.
    per_ip = config["LOCKGATE_AUTH_TOKEN_RATE_LIMIT_IP"], f"token-ip:{request.remote_addr}"
    spend(*per_ip)
    if request.mimetype != "application/x-www-form-urlencoded":
        return _error("invalid_request", "the body must be application/x-www-form-urlencoded")
    grant = request.form.get("grant_type")
    if grant is None:
        return _error("invalid_request", "grant_type is required")
    repeated = sorted(name for name in request.form if len(request.form.getlist(name)) > 1)
    if repeated:  # RFC 6749 §3.2: parameters must not be included more than once
        return _error("invalid_request", f"repeated parameter: {', '.join(repeated)}")
    if grant != "client_credentials":
        return _error("unsupported_grant_type", "only client_credentials is supported")
    credentials = _credentials()
    if isinstance(credentials, Response):
        return credentials
    client_id, secret = credentials
    per_client = config["LOCKGATE_AUTH_TOKEN_RATE_LIMIT_CLIENT"], f"token-client:{client_id}"
    if len(client_id) > 64 or len(secret) > 256 or not client_id.isprintable():
        return _error("invalid_client", "unknown client or wrong secret", 401)
    spend(*per_client)
    client = _store().authenticate(client_id, secret)
    if client is None:
        return _error("invalid_client", "unknown client or wrong secret", 401)
    refund(*per_ip)
    refund(*per_client)
    asked = request.form.get("scope")
    scopes = client.scopes if asked is None else frozenset(asked.split())
    if not scopes or not scopes <= client.scopes:
        return _error("invalid_scope", "the client may not have that scope")
    ttl = int(current_app.config["LOCKGATE_AUTH_TOKEN_TTL"])
    now = int(time.time())
    key = _keys().current()
    audience = audiences(scopes, frozenset(config["LOCKGATE_AUTH_SCOPES"]))
    claims: dict[str, Any] = {
        "iss": current_app.config["LOCKGATE_AUTH_ISSUER"],
        "sub": client.id,
        "client_id": client.id,
        "aud": audience[0] if len(audience) == 1 else audience,
        "iat": now,
        "exp": now + ttl,
        "jti": uuid.uuid4().hex,
        "scope": " ".join(sorted(scopes)),
    }
    signed = jwt.encode(
        claims, key.private, algorithm=key.algorithm, headers={"kid": key.kid, "typ": "at+jwt"}
    )
    response = jsonify(
        access_token=signed, token_type="Bearer", expires_in=ttl, scope=claims["scope"]
    )
    response.headers["Cache-Control"] = "no-store"
    response.headers["Pragma"] = "no-cache"
    return response


@bp.get("/.well-known/jwks.json")
def jwks() -> Response:
    keys = _keys()
    keys.current()  # made on first use, with the next one
    response = jsonify(keys.jwks())
    # Short: a rotation's next key is published ahead, so a minute is plenty.
    response.headers["Cache-Control"] = "public, max-age=60"
    return response


@bp.get("/.well-known/oauth-authorization-server")
def metadata() -> Response:
    issuer = current_app.config["LOCKGATE_AUTH_ISSUER"].rstrip("/")
    response = jsonify(
        issuer=issuer,
        token_endpoint=f"{issuer}/oauth/token",
        jwks_uri=f"{issuer}/.well-known/jwks.json",
        grant_types_supported=["client_credentials"],
        token_endpoint_auth_methods_supported=["client_secret_basic", "client_secret_post"],
        # Client credentials only: no authorization endpoint, no response type.
        response_types_supported=[],
        scopes_supported=sorted(current_app.config["LOCKGATE_AUTH_SCOPES"]),
    )
    response.headers["Cache-Control"] = "public, max-age=300"
    return response


def _verifier() -> Any:
    """The issuer's own verifier of its tokens, for any of the fleet's audiences."""
    found = current_app.extensions.get("auth.verifier")
    if found is None:
        from lockgate.auth import TokenVerifier

        known = frozenset(current_app.config["LOCKGATE_AUTH_SCOPES"])
        found = current_app.extensions["auth.verifier"] = TokenVerifier(
            issuer=str(current_app.config["LOCKGATE_AUTH_ISSUER"]),
            audience=audiences(known, known),
            load_jwks=_keys().jwks,
        )
    return found


@bp.get("/oauth/verify")
def verify() -> Response:
    """For a gateway's ``auth_request``: 204 with ``X-Client-Id`` and
    ``X-Scopes`` for a valid bearer token, else a 401 problem.

    The gateway may cache the answer per token for ``X-Accel-Expires``
    seconds: never past the token's own expiry. Services verify the token
    again (defence in depth); this answer only keeps bad tokens at the edge.
    """
    from lockgate.auth import InvalidToken
    from lockgate.problems import Problem

    header = request.headers.get("Authorization", "")
    scheme, _, token = header.strip().partition(" ")
    try:
        if scheme.lower() != "bearer" or not token.strip():
            raise InvalidToken("a bearer token is required")
        client = _verifier().verify(token.strip())
    except InvalidToken as error:
        reason = str(error).replace('"', "'")[:200]
        raise Problem(
            401,
            str(error),
            code="invalid_token",
            title="Invalid token",
            headers={
                "WWW-Authenticate": f'Bearer error="invalid_token", error_description="{reason}"',
                "Cache-Control": "no-store",
            },
        ) from None
    remaining = max(0, int(float(client.claims["exp"]) - time.time()))
    response = Response(status=204)
    response.headers["X-Client-Id"] = client.client_id
    response.headers["X-Scopes"] = " ".join(sorted(client.scopes))
    response.headers["X-Accel-Expires"] = str(remaining)
    response.headers["Cache-Control"] = f"private, max-age={remaining}"
    return response
