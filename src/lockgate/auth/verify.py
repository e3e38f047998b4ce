"""Verifying an access token (RFC 9068) as RFC 8725 says: trust the issuer's keys, never the token.

PyJWT does the cryptography and the claim checks; what it leaves to the
caller is written here: which key (by ``kid`` from our own JWKS only, never
``jku``, ``x5u``, ``x5c`` or an embedded ``jwk``, which are refused), which
algorithm (the key's, never the token's ``alg``), ``typ`` ``at+jwt``, every
claim required, a bounded leeway, a bounded token size, JWKS refetches at most
once per :data:`REFETCH_INTERVAL` for an unknown ``kid`` (a flood of forged
``kid`` values cannot turn into a flood of fetches), a failed fetch keeping
the keys already known, and a cache of verified tokens by digest until
their ``exp``, so a busy client's token is checked once, not per request.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["MAX_TOKEN_BYTES", "Client", "InvalidToken", "TokenVerifier"]

#: Longer tokens are refused before any parsing (RFC 6750 gives no bound; 8 KiB
#: is far above any token this fleet issues and below any server's header limit).
MAX_TOKEN_BYTES = 8192
#: The soonest an unknown ``kid`` fetches the JWKS again.
REFETCH_INTERVAL = 30.0
#: How long fetched keys are used before the next token refreshes them (the
#: issuer's ``Cache-Control: max-age``): a key published ahead of a rotation
#: is known by then, and a key withdrawn is dropped.
KEYS_MAX_AGE = 60.0
#: The most leeway on ``exp``, ``nbf`` and ``iat``.
MAX_LEEWAY = 30
_FORBIDDEN_HEADERS = ("jku", "x5u", "x5c", "jwk")
#: RFC 9068 §2.2: ``iss``, ``exp``, ``aud``, ``sub``, ``client_id``, ``iat``
#: and ``jti`` are all required (``client_id`` is checked below).
_REQUIRED = ["exp", "iat", "iss", "aud", "sub", "jti"]


class InvalidToken(Exception):
    """The token is missing, malformed, forged, expired or not for us."""


@dataclass(frozen=True, slots=True)
class Client:
    """Who called: the token's client and what it may do."""

    client_id: str
    scopes: frozenset[str]
    claims: Mapping[str, Any]


class _Keys:
    """The issuer's public keys by ``kid``, from a JWKS URL or a loader."""

    def __init__(self, load: Callable[[], Mapping[str, Any]]) -> None:
        self.load = load
        self.keys: dict[str, Any] = {}
        self.fetched = float("-inf")
        self.lock = threading.Lock()

    def get(self, kid: str) -> Any:
        key = self.keys.get(kid)
        if key is not None and time.monotonic() - self.fetched < KEYS_MAX_AGE:
            return key
        with self.lock:
            age = time.monotonic() - self.fetched
            key = self.keys.get(kid)
            # A local file that changed since it was read is read again at once:
            # one stat, no storm (two rotations in a row need no 30 s wait).
            changed = getattr(self.load, "changed", None)
            fresh = key is None and callable(changed) and changed()
            if (key is None and age >= REFETCH_INTERVAL) or age >= KEYS_MAX_AGE or fresh:
                self.refresh()
                key = self.keys.get(kid)
        return key

    def refresh(self) -> None:
        """Fetch the JWKS; on failure keep what is known (and wait the interval)."""
        from jwt import PyJWK, PyJWKSet
        from jwt.exceptions import PyJWKError, PyJWKSetError

        self.fetched = time.monotonic()
        try:
            document = self.load()
            found: dict[str, PyJWK] = {}
            for key in PyJWKSet.from_dict(dict(document)).keys:
                if key.key_id and key.public_key_use in (None, "sig"):
                    found[key.key_id] = key
        except (OSError, ValueError, PyJWKError, PyJWKSetError):
            return
        if found:
            self.keys = found


class FileLoader:
    """A JWKS from a file on this machine (the issuer's ``jwks.json``), which
    says when it has changed since it was read."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.read_as: tuple[int, int] | None = None

    def _stamp(self) -> tuple[int, int] | None:
        import os

        try:
            found = os.stat(self.path)
        except OSError:
            return None
        return found.st_mtime_ns, found.st_size

    def changed(self) -> bool:
        stamp = self._stamp()
        return stamp is not None and stamp != self.read_as

    def __call__(self) -> Mapping[str, Any]:
        stamp = self._stamp()
        with open(self.path, encoding="utf-8") as file:
            document: Mapping[str, Any] = json.load(file)
        self.read_as = stamp
        return document


def url_loader(url: str, timeout: float = 5.0) -> Callable[[], Mapping[str, Any]]:
    """A JWKS loader over HTTP(S): PyJWT's :class:`~jwt.PyJWKClient` fetches,
    and :class:`_Keys` decides when (PyJWKClient alone refetches on every
    unknown ``kid``, and drops its keys when a fetch fails)."""
    from jwt import PyJWKClient
    from jwt.exceptions import PyJWKClientError

    client = PyJWKClient(url, cache_jwk_set=False, cache_keys=False, timeout=timeout)

    def load() -> Mapping[str, Any]:
        try:
            document: Mapping[str, Any] = client.fetch_data()
        except PyJWKClientError as error:
            raise OSError(str(error)) from None
        return document

    return load


class TokenVerifier:
    """Checks access tokens of one issuer for one audience (or any of several:
    the gateway's check at the edge, for every service behind it).

    :param load_jwks: returns the issuer's JWKS (see :func:`url_loader`).
    :param cache_size: verified tokens remembered (by SHA-256) until they expire.
    """

    def __init__(
        self,
        *,
        issuer: str,
        audience: str | list[str],
        load_jwks: Callable[[], Mapping[str, Any]],
        leeway: int = 10,
        cache_size: int = 10000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not 0 <= leeway <= MAX_LEEWAY:
            raise ValueError(f"leeway must be 0 to {MAX_LEEWAY} seconds, not {leeway}")
        self.issuer = issuer
        self.audience = audience
        self.leeway = leeway
        self.clock = clock
        self.keys = _Keys(load_jwks)
        self.cache: OrderedDict[bytes, tuple[float, Client]] = OrderedDict()
        self.cache_size = cache_size

    def verify(self, token: str) -> Client:
        """The client of a valid ``token``.

        :raises InvalidToken: with the reason, for any token not to be trusted.
        """
        if len(token) > MAX_TOKEN_BYTES:
            raise InvalidToken("the token is longer than 8 KiB")
        digest = hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()
        cached = self.cache.get(digest)
        now = self.clock()
        if cached is not None:
            if now < cached[0] + self.leeway:
                return cached[1]
            self.cache.pop(digest, None)
        client, expires = self._verify(token, now)
        self.cache[digest] = (expires, client)
        if len(self.cache) > self.cache_size:
            self.cache.popitem(last=False)
        return client

    def _verify(self, token: str, now: float) -> tuple[Client, float]:
        import jwt

        if token.count(".") != 2:
            raise InvalidToken("not a signed JWT (JWS compact serialization)")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as error:
            raise InvalidToken(f"malformed token: {error}") from None
        for name in _FORBIDDEN_HEADERS:
            if name in header:
                raise InvalidToken(f"the token names its own key ({name}); it is never followed")
        typ = str(header.get("typ", "")).lower()
        if typ not in ("at+jwt", "application/at+jwt"):
            raise InvalidToken("the token is not an access token (typ must be at+jwt)")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise InvalidToken("the token names no key (kid)")
        key = self.keys.get(kid)
        if key is None:
            raise InvalidToken("the token's key is not one of the issuer's")
        algorithm = key.algorithm_name
        if header.get("alg") != algorithm:
            raise InvalidToken("the token's algorithm is not its key's")
        try:
            claims = jwt.decode(
                token,
                key.key,
                algorithms=[algorithm],
                audience=self.audience,
                issuer=self.issuer,
                leeway=self.leeway,
                options={"require": _REQUIRED, "verify_iat": True},
            )
        except jwt.PyJWTError as error:
            raise InvalidToken(str(error) or type(error).__name__) from None
        iat = claims.get("iat")
        if not isinstance(iat, int | float) or iat > now + self.leeway:
            raise InvalidToken("the token was issued in the future")
        client_id = claims.get("client_id")
        scope = claims.get("scope", "")
        if not isinstance(client_id, str) or not client_id or not isinstance(scope, str):
            raise InvalidToken("client_id (required) and scope must be strings")
        client = Client(client_id, frozenset(scope.split()), claims)
        return client, float(claims["exp"])
