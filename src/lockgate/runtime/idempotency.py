"""``Idempotency-Key`` (draft-ietf-httpapi-idempotency-key-header) on views that opt in.

A view marked :func:`idempotent` runs once per key: the first request with a
key runs, a repeat with the same request replays the stored answer, the same
key with another request is 422, and a repeat while the first still runs is
409. Keys are kept per client (:func:`~lockgate.runtime.callers.client_key`),
service and route, in the app's one Redis when ``REDIS_URL`` is set (shared
by every worker), else in process. One Lua script reserves a key or reads
what it holds, in one round trip, so of N requests with one key arriving at
once over any number of workers exactly one runs.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import re
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import wraps
from typing import Any, Literal, Protocol, TypeVar

import redis
from flask import Flask, Response, current_app, request
from werkzeug.exceptions import HTTPException

from ..bodies import PARSED_KEY, read_body
from ..problems import Problem
from ..views import IDEMPOTENT_ATTR
from .callers import client_key
from .redis import redis_client
from .settings import service_name, settle

__all__ = ["HEADER", "MAX_KEY_LENGTH", "REPLAYED", "Idempotency", "Stored", "idempotent"]

F = TypeVar("F", bound=Callable[..., Any])
#: How a finished answer was kept: under its own reservation; after the
#: reservation lapsed with nobody else on the key; or not, another holds it.
Kept = Literal["kept", "lapsed", "taken"]
#: The request header carrying the key.
HEADER = "Idempotency-Key"
#: Added to a replayed answer (``true``); nothing else about it differs.
REPLAYED = "Idempotent-Replayed"
#: The longest key accepted, in characters.
MAX_KEY_LENGTH = 255
#: Methods that are idempotent already: the key is not looked at.
SAFE = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})
#: Answers below 500 that say "not now" rather than "this is the outcome": not
#: kept, like a 5xx (Request Timeout, Too Early, Too Many Requests).
TRANSIENT = frozenset({408, 425, 429})
#: Headers of the view's answer that are not replayed: recomputed (the length),
#: hop-by-hop, or never to be handed out twice (a cookie).
NOT_REPLAYED = frozenset(
    {"content-length", "set-cookie", "date", "server", "connection", "keep-alive"}
    | {"transfer-encoding", "trailer", "upgrade", "proxy-connection"}
)
logger = logging.getLogger("lockgate.idempotency")

# RFC 8941 section 3.3.3: an sf-string, and the parameters an Item may carry
# (section 3.1.2) with their bare items (integer, decimal, string, token,
# byte sequence, boolean). The draft defines no parameters: they are ignored.
_CHARS = r'(?:[\x20\x21\x23-\x5b\x5d-\x7e]|\\["\\])*'
_BARE = (
    rf'(?:-?(?:[0-9]{{1,12}}\.[0-9]{{1,3}}|[0-9]{{1,15}})|"{_CHARS}"'
    r"|[A-Za-z*][!#$%&'*+\-.^_`|~0-9A-Za-z:/]*|:[A-Za-z0-9+/=]*:|\?[01])"
)
_ITEM = re.compile(rf' *"({_CHARS})"(?:; *[a-z*][a-z0-9_\-.*]*(?:={_BARE})?)* *')
_ESCAPE = re.compile(r'\\(["\\])')
#: The bare form some clients send (``Idempotency-Key: 8e03978e-...``):
#: visible ASCII but ``"`` and ``,`` (a comma would be a list: two keys).
_BARE_KEY = re.compile(r" *([\x21\x23-\x2b\x2d-\x7e]+) *")


@dataclass(frozen=True, slots=True)
class Stored:
    """A finished answer, as it is replayed."""

    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes


@dataclass(frozen=True, slots=True)
class _Held:
    """What a key holds that another request reserved first."""

    fingerprint: str
    #: ``None``: that request is still running.
    stored: Stored | None


class _Store(Protocol):
    def reserve(self, key: str, fingerprint: str, token: str, lock_ttl: float) -> _Held | None:
        """Reserve ``key`` as running for ``lock_ttl`` s; ``None`` when reserved
        now, else what it holds."""

    def finish(self, key: str, token: str, fingerprint: str, stored: Stored, ttl: float) -> Kept:
        """Keep ``stored`` for ``ttl`` s unless another request holds ``key``."""

    def release(self, key: str, token: str) -> None:
        """Forget ``key`` if ``token`` still holds it."""


_RESERVE = """
local held = redis.call('HMGET', KEYS[1], 'fp', 'status', 'headers', 'body')
if held[1] then
  return held
end
redis.call('HSET', KEYS[1], 'fp', ARGV[1], 'token', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return false
"""
_FINISH = """
local ours = redis.call('HGET', KEYS[1], 'token') == ARGV[1]
if not ours and redis.call('EXISTS', KEYS[1]) == 1 then
  return 0
end
redis.call('HSET', KEYS[1], 'fp', ARGV[2], 'status', ARGV[3], 'headers', ARGV[4], 'body', ARGV[5])
redis.call('HDEL', KEYS[1], 'token')
redis.call('PEXPIRE', KEYS[1], ARGV[6])
if ours then
  return 1
end
return 2
"""
_RELEASE = """
if redis.call('HGET', KEYS[1], 'token') == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


class _RedisStore:
    """Keys as Redis hashes: ``fp`` and ``token`` while running; ``fp``,
    ``status``, ``headers`` and ``body`` once finished. Each step is one script,
    so reserving and reading, or checking the owner and writing, are atomic."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client

    def reserve(self, key: str, fingerprint: str, token: str, lock_ttl: float) -> _Held | None:
        found = self.client.eval(_RESERVE, 1, key, fingerprint, token, _ms(lock_ttl))
        if found is None:
            return None
        fp, status, headers, body = found
        if status is None:
            return _Held(fp.decode(), None)
        pairs = tuple((name, value) for name, value in json.loads(headers))
        return _Held(fp.decode(), Stored(int(status), pairs, bytes(body or b"")))

    def finish(self, key: str, token: str, fingerprint: str, stored: Stored, ttl: float) -> Kept:
        headers = json.dumps(stored.headers)
        done = self.client.eval(
            _FINISH, 1, key, token, fingerprint, stored.status, headers, stored.body, _ms(ttl)
        )
        return ("taken", "kept", "lapsed")[int(done)]

    def release(self, key: str, token: str) -> None:
        self.client.eval(_RELEASE, 1, key, token)


@dataclass(slots=True)
class _Entry:
    fingerprint: str
    token: str | None
    stored: Stored | None
    expires: float


class _MemoryStore:
    """Keys in a dict behind a lock, for one process (``lockgate run``, tests)."""

    #: Seconds between sweeps of expired keys.
    SWEEP = 60.0

    def __init__(self) -> None:
        self.entries: dict[str, _Entry] = {}
        self.lock = threading.Lock()
        self.swept = time.monotonic()

    def reserve(self, key: str, fingerprint: str, token: str, lock_ttl: float) -> _Held | None:
        now = time.monotonic()
        with self.lock:
            if now - self.swept > self.SWEEP:
                self.swept = now
                for name in [k for k, e in self.entries.items() if e.expires <= now]:
                    del self.entries[name]
            entry = self.entries.get(key)
            if entry is not None and entry.expires > now:
                return _Held(entry.fingerprint, entry.stored)
            self.entries[key] = _Entry(fingerprint, token, None, now + lock_ttl)
            return None

    def finish(self, key: str, token: str, fingerprint: str, stored: Stored, ttl: float) -> Kept:
        now = time.monotonic()
        with self.lock:
            entry = self.entries.get(key)
            live = entry if entry is not None and entry.expires > now else None
            if live is not None and live.token != token:
                return "taken"
            self.entries[key] = _Entry(fingerprint, None, stored, now + ttl)
            return "kept" if live is not None else "lapsed"

    def release(self, key: str, token: str) -> None:
        with self.lock:
            entry = self.entries.get(key)
            if entry is not None and entry.token == token:
                del self.entries[key]


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))


@dataclass(frozen=True, slots=True)
class _State:
    store: _Store
    prefix: str
    ttl: float
    lock_ttl: float


class Idempotency:
    """Where :func:`idempotent` views keep their keys (Redis when shared, else
    in process); :class:`~lockgate.runtime.Runtime` registers it."""

    def __init__(self, app: Flask | None = None) -> None:
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        """Set idempotency keys up on ``app``.

        Reads ``REDIS_URL`` (none: in process), ``LOCKGATE_SERVICE`` (key
        namespace), ``LOCKGATE_IDEMPOTENCY_TTL`` (86400 s) and
        ``LOCKGATE_IDEMPOTENCY_LOCK_TTL`` (60 s); see :func:`idempotent`.

        :raises RuntimeError: it is already registered on ``app``.
        """
        if "lockgate.idempotency" in app.extensions:
            raise RuntimeError("lockgate.Idempotency is already registered on this app")
        settle(app)
        client = redis_client(app)
        app.extensions["lockgate.idempotency"] = _State(
            store=_RedisStore(client) if client is not None else _MemoryStore(),
            prefix=f"lockgate:idem:{service_name(app)}:",
            ttl=float(app.config["LOCKGATE_IDEMPOTENCY_TTL"]),
            lock_ttl=float(app.config["LOCKGATE_IDEMPOTENCY_LOCK_TTL"]),
        )


def idempotent(*, required: bool = False) -> Callable[[F], F]:
    """Run a view once per ``Idempotency-Key``; replay its answer to repeats.

    For views that change something (``POST``, ``PATCH``); safe methods pass
    through untouched. Put it under the route decorator, over the view::

        @bp.post("")
        @idempotent()
        @operation(request=NewOrder, response=Order, status=201)
        def create_order(): ...

    A request with a key is told apart from others by its client
    (:func:`~lockgate.runtime.callers.client_key`: the verified token's client
    id, else the address), the service and the route (its endpoint): two
    clients may use one key. What it asks is its fingerprint, the SHA-256 of
    its method, path, query string and raw body bytes (not a canonical form
    of the JSON: a retry resends the same bytes; the same document re-encoded
    counts as another request).

    =====================================  ======================================
    the key                                the answer
    =====================================  ======================================
    first seen                             the view runs; its answer is stored
    seen, same fingerprint, finished       the stored answer, replayed
    seen, same fingerprint, still running  409 ``IdempotencyKeyInUse``,
                                           ``Retry-After: 1``
    seen with another fingerprint          422 ``IdempotencyKeyReused``
    empty, past 255 characters, or         400 ``InvalidIdempotencyKey``
    not a key (two keys, a list, ...)
    absent                                 the view runs, unprotected; with
                                           ``required=True``: 400
                                           ``IdempotencyKeyMissing``
    =====================================  ======================================

    The key is an RFC 8941 sf-string as the draft says
    (``Idempotency-Key: "8e03978e-40d5"``); its parameters, of which the draft
    defines none, are ignored. For clients written before the draft a bare
    value is accepted too (``Idempotency-Key: 8e03978e-40d5``: visible ASCII
    but ``"`` and ``,``), and is the same key as its quoted form.

    A replay has the first answer's status, body bytes and headers
    (``Location``, ``Content-Type`` and any other the view set; not
    ``Content-Length``, recomputed, ``Set-Cookie``, never handed out twice, or
    hop-by-hop fields), plus ``Idempotent-Replayed: true``. What the runtime
    adds after the view (request id, ``RateLimit-*``, version headers) is
    this request's own. Every answer below 500 is stored, 4xx included: the
    same request gets the same answer. A 5xx, a 408, 425 or 429 (not an
    outcome, a "not now"), or an exception the view does not answer, is not
    stored: the key is released and the client may retry.

    Failure modes, chosen as for payments (a duplicate costs more than a
    refusal):

    - Redis unreachable when a keyed request arrives: 503
      ``IdempotencyUnavailable`` with ``Retry-After: 5``, and the view does
      not run. A client sends a key because a duplicate would hurt it, and
      retries exactly when it does not know whether its first attempt landed;
      running unprotected then is the one case the key exists to prevent.
      Requests without a key are not affected (unless ``required``).
    - Redis fails after the view ran: the answer is returned, and the failure
      logged. The key stays reserved until ``LOCKGATE_IDEMPOTENCY_LOCK_TTL``
      passes, and a retry after that runs again. So does a retry after a
      worker died mid-request, which is the lock TTL's point (a dead worker
      must not hold a key for a day). Where a duplicate must be impossible,
      not merely unlikely, the domain needs its own unique constraint too.
    - A view running longer than the lock TTL loses its reservation: a repeat
      may then run alongside it (the answer of the one holding the key is
      kept, the other's is logged). Keep the TTL above the longest a request
      may run (gunicorn under ``lockgate serve`` kills a worker after 35 s).

    Config (settled by :class:`Idempotency`, which
    :class:`~lockgate.runtime.Runtime` registers): ``REDIS_URL`` (shared by
    every worker; none: in process, one worker only),
    ``LOCKGATE_IDEMPOTENCY_TTL`` (86400: seconds a finished answer is
    replayed), ``LOCKGATE_IDEMPOTENCY_LOCK_TTL`` (60: seconds a running
    request holds its key), ``LOCKGATE_SERVICE`` (key namespace).

    :param required: a request without a key is 400, as the draft allows for
        an operation documented to need one.
    """

    def decorate(view: F) -> F:
        @wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if request.method in SAFE:
                return view(*args, **kwargs)
            sent = request.headers.getlist(HEADER)
            if not sent:
                if required:
                    raise Problem(
                        400,
                        f"this operation needs an {HEADER} header",
                        code="IdempotencyKeyMissing",
                    )
                return view(*args, **kwargs)
            return _run(_key(sent), lambda: view(*args, **kwargs))

        # For the OpenAPI documents: the operation takes the header.
        setattr(wrapper, IDEMPOTENT_ATTR, required)
        return wrapper  # type: ignore[return-value]

    return decorate


def _key(sent: list[str]) -> str:
    """The key of the header's one field value.

    :raises Problem: 400 ``InvalidIdempotencyKey``.
    """
    key: str | None = None
    if len(sent) == 1:
        if (item := _ITEM.fullmatch(sent[0])) is not None:
            key = _ESCAPE.sub(r"\1", item[1])
        elif (bare := _BARE_KEY.fullmatch(sent[0])) is not None:
            key = bare[1]
    if key is None:
        reason = "one field value" if len(sent) != 1 else "an RFC 8941 string"
        raise Problem(
            400, f'{HEADER} must be {reason}, such as "8e03978e-40d5"', code="InvalidIdempotencyKey"
        )
    if not key or len(key) > MAX_KEY_LENGTH:
        raise Problem(
            400,
            f"{HEADER} must have 1 to {MAX_KEY_LENGTH} characters, not {len(key)}",
            code="InvalidIdempotencyKey",
        )
    return key


def _fingerprint() -> str:
    """SHA-256 of method, path, query and the raw body (413 past the limit)."""
    environ = request.environ
    parsed = environ.get(PARSED_KEY)
    stream = environ.get("wsgi.input")
    if parsed is not None and parsed[0] is stream and isinstance(stream, io.BytesIO):
        body = stream.getvalue()  # a version change's body, left unread for its reader
    else:
        body = read_body()  # cached, or put back in the environ, for the view
    target = json.dumps([request.method, request.path, request.query_string.decode("latin-1")])
    digest = hashlib.sha256(target.encode())
    digest.update(b"\0")
    digest.update(body)
    return digest.hexdigest()


def _run(key: str, call: Callable[[], Any]) -> Response:
    found = current_app.extensions.get("lockgate.idempotency")
    if found is None:
        raise RuntimeError("@idempotent needs lockgate.runtime.Idempotency (or Runtime) on the app")
    state: _State = found
    fingerprint = _fingerprint()
    scope = json.dumps([request.endpoint, client_key(), key])
    name = state.prefix + hashlib.sha256(scope.encode()).hexdigest()
    token = secrets.token_hex(16)
    try:
        held = state.store.reserve(name, fingerprint, token, state.lock_ttl)
    except redis.RedisError as error:
        logger.error("idempotency keys are unavailable, refusing keyed requests: %s", error)
        raise Problem(
            503,
            f"{HEADER} cannot be checked right now; nothing was done, retry with the same key",
            code="IdempotencyUnavailable",
            headers={"Retry-After": "5"},
        ) from None
    if held is not None:
        if held.fingerprint != fingerprint:
            raise Problem(
                422,
                f"this {HEADER} was used with another request; use a new key for a new request",
                code="IdempotencyKeyReused",
            )
        if held.stored is None:
            raise Problem(
                409,
                f"a request with this {HEADER} is still being processed; retry shortly",
                code="IdempotencyKeyInUse",
                headers={"Retry-After": "1"},
            )
        return _replay(held.stored)
    try:
        response = current_app.make_response(call())
    except HTTPException as error:
        if error.code is None or error.code >= 500 or error.code in TRANSIENT:
            _release(state, name, token)
            raise
        # Answered like any other 4xx, so the answer can be kept and replayed.
        response = current_app.make_response(current_app.handle_user_exception(error))
    except BaseException:
        _release(state, name, token)
        raise
    status = response.status_code
    if status >= 500 or status in TRANSIENT or response.direct_passthrough:
        _release(state, name, token)  # a file is not kept; neither is a failure
        return response
    headers = tuple((k, v) for k, v in response.headers.items() if k.lower() not in NOT_REPLAYED)
    stored = Stored(response.status_code, headers, response.get_data())
    try:
        kept = state.store.finish(name, token, fingerprint, stored, state.ttl)
    except redis.RedisError as error:
        logger.error("an answer could not be kept for its %s: %s", HEADER, error)
    else:
        if kept != "kept":
            logger.warning(
                "a request ran past LOCKGATE_IDEMPOTENCY_LOCK_TTL (%s s); its %s was %s",
                state.lock_ttl,
                HEADER,
                "kept still" if kept == "lapsed" else "taken by a repeat, which ran too",
            )
    return response


def _release(state: _State, name: str, token: str) -> None:
    try:
        state.store.release(name, token)
    except redis.RedisError as error:  # the key frees itself after the lock TTL
        logger.warning("an %s could not be released: %s", HEADER, error)


def _replay(stored: Stored) -> Response:
    response = current_app.response_class(stored.body, status=stored.status)
    del response.headers["Content-Type"]  # the stored one, or none if it had none
    for name, value in stored.headers:
        response.headers.add(name, value)
    response.headers[REPLAYED] = "true"
    return response
