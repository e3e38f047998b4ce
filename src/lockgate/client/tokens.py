"""A service's own access token: the client credentials grant (RFC 6749 §4.4).

The token is fetched on first use and refreshed before it expires (at
:data:`REFRESH_AT` of its ``expires_in``), never per call. One fetch at a
time per process: a refresh due while the token is still valid is done by
one thread while the others keep using the old token; only an expired (or
missing) token makes callers wait for the fetch. A 401 from the target drops
the token once and the call is sent again with a fresh one (the issuer may
have rotated its keys, or revoked the token).

The client authenticates with HTTP Basic, its id and secret form-encoded
first (§2.3.1); a token endpoint that fails makes the call a 503
``UpstreamUnavailable``: the caller's client can do nothing about it.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from base64 import b64encode
from collections.abc import Generator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote_plus

import httpx

from .call import CALL_KEY, Call
from .failures import UpstreamUnavailable

__all__ = ["REFRESH_AT", "ClientCredentials"]

#: The share of a token's lifetime after which it is refreshed.
REFRESH_AT = 0.8
#: The longest a token fetch may take (also cut to the call's deadline).
FETCH_TIMEOUT = 5.0
#: After a failed fetch, how long callers without a valid token fail at once.
FAILURE_PAUSE = 1.0
logger = logging.getLogger("lockgate.client")


@dataclass(frozen=True, slots=True)
class _Token:
    value: str
    #: ``time.monotonic()`` after which it is refreshed, and after which it is not used.
    refresh_at: float
    expires_at: float


_http: httpx.Client | None = None
_http_pid = 0
_http_lock = threading.Lock()


def _token_http() -> httpx.Client:
    """One pooled client per process for token endpoints (made again after a fork)."""
    global _http, _http_pid
    pid = os.getpid()
    if _http is None or _http_pid != pid:
        with _http_lock:
            if _http is None or _http_pid != pid:
                _http = httpx.Client(trust_env=False, follow_redirects=False)
                _http_pid = pid
    return _http


class ClientCredentials(httpx.Auth):
    """Bearer tokens of the client credentials grant, cached per process.

    :param token_url: the issuer's token endpoint (``.../oauth/token``).
    :param client_id: this service's client id.
    :param client_secret: its secret.
    :param scope: the scopes to ask for (space-separated); ``None`` asks for
        the client's defaults.
    """

    def __init__(
        self, token_url: str, client_id: str, client_secret: str, *, scope: str | None = None
    ) -> None:
        self.token_url = token_url
        self.client_id = client_id
        self.scope = scope
        pair = f"{quote_plus(client_id)}:{quote_plus(client_secret)}"
        self._basic = "Basic " + b64encode(pair.encode()).decode("ascii")
        self._token: _Token | None = None
        self._lock = threading.Lock()
        self._pid = os.getpid()
        #: After a failed fetch, callers without a valid token fail fast until then.
        self._failed_until = float("-inf")

    def __repr__(self) -> str:  # never the secret
        return f"ClientCredentials({self.token_url!r}, {self.client_id!r}, scope={self.scope!r})"

    def _fetch(self, timeout: float, target: str) -> _Token:
        form = {"grant_type": "client_credentials"}
        if self.scope:
            form["scope"] = self.scope
        started = time.monotonic()
        try:
            response = _token_http().post(
                self.token_url,
                data=form,
                headers={"Authorization": self._basic, "Accept": "application/json"},
                timeout=httpx.Timeout(timeout, connect=min(1.0, timeout)),
            )
            body: Any = response.json() if response.status_code == 200 else None
        except (httpx.HTTPError, ValueError) as error:
            logger.warning("token endpoint %s failed: %s", self.token_url, error)
            raise UpstreamUnavailable(
                target, f"no token to call {target}: its token endpoint failed"
            ) from error
        token = body.get("access_token") if isinstance(body, dict) else None
        lifetime = body.get("expires_in") if isinstance(body, dict) else None
        if not isinstance(token, str) or not token:
            logger.error(
                "token endpoint %s answered %s for client %s: %s",
                self.token_url,
                response.status_code,
                self.client_id,
                response.text[:300],
            )
            raise UpstreamUnavailable(
                target, f"no token to call {target}: its token endpoint refused"
            )
        # No expires_in (RFC 6749 makes it RECOMMENDED only): refresh within a minute.
        seconds = lifetime if isinstance(lifetime, int | float) and lifetime > 0 else 60
        return _Token(token, started + REFRESH_AT * seconds, started + seconds)

    def token(self, *, timeout: float = FETCH_TIMEOUT, target: str = "the target") -> str:
        """A valid access token, fetched or refreshed when due.

        :raises UpstreamUnavailable: the token endpoint failed or refused.
        """
        if self._pid != os.getpid():  # a lock held at fork time would never be released
            self._lock, self._pid = threading.Lock(), os.getpid()
        now = time.monotonic()
        found = self._token
        if found is not None and now < found.refresh_at:
            return found.value
        if found is not None and now < found.expires_at:
            # Due but still valid: one thread refreshes, the others go on with it.
            if self._lock.acquire(blocking=False):
                try:
                    if self._token is found:
                        self._token = self._fetch(timeout, target)
                except UpstreamUnavailable:
                    pass  # keep the valid one; the next call tries again
                finally:
                    self._lock.release()
            return (self._token or found).value
        with self._lock:
            found = self._token
            now = time.monotonic()
            if found is not None and now < found.refresh_at:
                return found.value  # another thread fetched it while we waited
            if now < self._failed_until:
                # The endpoint just failed: do not queue every caller behind a fetch.
                raise UpstreamUnavailable(
                    target, f"no token to call {target}: its token endpoint failed", retry_after=1
                )
            try:
                found = self._token = self._fetch(timeout, target)
            except UpstreamUnavailable:
                self._failed_until = time.monotonic() + FAILURE_PAUSE
                raise
            return found.value

    def forget(self, value: str) -> None:
        """Drop ``value`` if it is still the cached token (the target refused it)."""
        with self._lock:
            if self._token is not None and self._token.value == value:
                self._token = None

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        call = request.extensions.get(CALL_KEY)
        target = call.target if isinstance(call, Call) else "the target"

        def timeout() -> float:
            left = call.remaining() if isinstance(call, Call) else FETCH_TIMEOUT
            return max(0.001, min(FETCH_TIMEOUT, left))

        value = self.token(timeout=timeout(), target=target)
        request.headers["Authorization"] = f"Bearer {value}"
        response = yield request
        if response.status_code == 401:
            self.forget(value)
            value = self.token(timeout=timeout(), target=target)
            request.headers["Authorization"] = f"Bearer {value}"
            yield request
