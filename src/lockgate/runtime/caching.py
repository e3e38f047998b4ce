"""HTTP caching: strong ETags with 304s, ``Cache-Control``, and server-side cached reads.

Every successful GET gets a strong ``ETag`` (a hash of its body) and answers
``If-None-Match`` with 304. A view marked :func:`cached` is also kept in a
cachelib cache (``LOCKGATE_CACHE_URL``, by default the app's one Redis
client of ``REDIS_URL``, else in process) under a key of service, version,
path and the query parameters the view reads (its ``operation(query=...)``
model's fields), so v1 and v2 never share an entry and junk parameters do
not multiply entries. Invalidation is by generation: a write to a resource
bumps its counter, and an entry counts only if it was stored under the
current one, so no stale entry can be read again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar
from urllib.parse import urlencode

import redis
from cachelib import BaseCache, RedisCache, SimpleCache
from flask import Flask, Response, current_app, make_response, request

from ..versioning import current_version
from ..views import CONTROL_ATTR, QUERY_ATTR, cache_control
from .memcached import memcached_cache
from .redis import redis_client
from .settings import service_name, settle

__all__ = ["Caching", "cache_control", "cached", "invalidate", "prefetch"]

F = TypeVar("F", bound=Callable[..., Any])
#: On a :func:`cached` view: the resource it reads.
CACHED_ATTR = "_lockgate_cached_resource"
#: Where the rate limiter's round trip leaves a cached view's two reads.
PREFETCHED_KEY = "lockgate.cache_prefetched"
logger = logging.getLogger("lockgate.caching")


class Caching:
    """ETags for every GET, and the cache behind :func:`cached` views."""

    def __init__(self, app: Flask | None = None) -> None:
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        """Set caching up on ``app``.

        Reads ``LOCKGATE_CACHE_URL`` (default: ``REDIS_URL``'s client; neither:
        an in-process cache), ``LOCKGATE_SERVICE`` (key namespace),
        ``LOCKGATE_CACHE_ENABLED`` (True: serve :func:`cached` views from the
        cache), ``LOCKGATE_CACHE_TTL`` (30 s), ``LOCKGATE_CACHE_CONTROL``
        (``"no-cache"``: revalidate with the ETag).
        """
        if "lockgate.caching" in app.extensions:
            raise RuntimeError("lockgate.Caching is already registered on this app")
        settle(app)
        app.extensions["lockgate.caching"] = make_cache(app)
        app.after_request(_conditional)

    @staticmethod
    def on_redis(app: Flask) -> bool:
        """Whether ``app``'s cached reads live on its one Redis client (so they
        can ride in the rate limiter's round trip)."""
        cache = app.extensions["lockgate.caching"]
        client = redis_client(app)
        return isinstance(cache, RedisCache) and client is not None and cache._read_client is client


def make_cache(app: Flask) -> BaseCache:
    """The cache for ``app``'s settings."""
    prefix = f"lockgate:cache:{service_name(app)}:"
    ttl = int(app.config["LOCKGATE_CACHE_TTL"])
    url = app.config.get("LOCKGATE_CACHE_URL")
    if url and str(url).startswith("memcached://"):
        return memcached_cache(str(url), prefix, ttl)
    if url:
        return RedisCache(host=redis_from_url(str(url)), key_prefix=prefix, default_timeout=ttl)
    client = redis_client(app)
    if client is not None:
        return RedisCache(host=client, key_prefix=prefix, default_timeout=ttl)
    return SimpleCache(threshold=10000, default_timeout=ttl)


def redis_from_url(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, socket_timeout=1, socket_connect_timeout=1)


def _cache() -> BaseCache:
    found: BaseCache = current_app.extensions["lockgate.caching"]
    return found


def _safe(action: Callable[[], Any], default: Any = None) -> Any:
    """Cache errors (Redis down) degrade to no caching, never to a 500."""
    try:
        return action()
    except Exception as error:
        logger.warning("cache unavailable: %s", error)
        return default


def invalidate(resource: str) -> None:
    """A write changed ``resource``: no cached read of it is served again."""
    backend = _cache()
    if _safe(lambda: backend.inc(f"gen:{resource}"), None) is None:
        logger.warning("could not invalidate %s; cached reads expire within the TTL", resource)


def cached(
    resource: str, *, ttl: int | None = None, cache_control: str | None = None
) -> Callable[[F], F]:
    """Serve a GET view from the cache, keyed by service, version, path and query.

    :param resource: what the view reads; :func:`invalidate` it on writes.
    :param ttl: seconds (default ``LOCKGATE_CACHE_TTL``).
    :param cache_control: the response's ``Cache-Control``.
    """

    def decorate(view: F) -> F:
        # The parameters the view reads (its declared query model); None: all.
        params: frozenset[str] | None = getattr(view, QUERY_ATTR, None)

        @wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if request.method != "GET" or not current_app.config["LOCKGATE_CACHE_ENABLED"]:
                return view(*args, **kwargs)
            keys = _keys(resource, params)
            # One round trip: the resource's generation and the entry, which
            # is valid only if it was stored under that same generation. The
            # rate limiter may have fetched both already, in its own round trip.
            # Kept in the environ, not on ``g``: it belongs to this request only.
            prefetched = request.environ.pop(PREFETCHED_KEY, None)
            if prefetched is not None and prefetched[0] == keys:
                decode = prefetched[1]
                generation, hit = _safe(decode, (None, None))
            else:
                generation, hit = _safe(lambda: _cache().get_many(*keys), (None, None))
            generation = int(generation or 0)
            if isinstance(hit, tuple) and len(hit) == 6 and hit[0] == generation:
                _, body, status, mimetype, etag, weak = hit
                response = Response(body, status=status, mimetype=mimetype)
                response.set_etag(etag, weak=weak)  # hashed once, when stored
                response.headers["X-Cache"] = "hit"
                return response
            response = make_response(view(*args, **kwargs))
            if response.status_code == 200 and not response.direct_passthrough:
                if "ETag" not in response.headers:
                    response.add_etag()
                etag, weak = response.get_etag()
                entry = (generation, response.get_data(), 200, response.mimetype, etag, weak)
                timeout = ttl if ttl is not None else current_app.config["LOCKGATE_CACHE_TTL"]
                _safe(lambda: _cache().set(keys[1], entry, timeout=timeout))
            response.headers["X-Cache"] = "miss"
            return response

        if cache_control is not None:
            setattr(wrapper, CONTROL_ATTR, cache_control)  # the parameter shadows the helper
        setattr(wrapper, CACHED_ATTR, resource)
        return wrapper  # type: ignore[return-value]

    return decorate


def _keys(resource: str, params: frozenset[str] | None) -> tuple[str, str]:
    """The generation key of ``resource`` and the entry key of this request:
    only the parameters the view reads are part of it."""
    version = current_version()
    items = request.args.items(multi=True)
    if params is not None:
        items = ((name, value) for name, value in items if name in params)
    query = urlencode(sorted(items))
    return f"gen:{resource}", f"v{version.label.text if version else '-'}:{request.path}?{query}"


def prefetch() -> tuple[list[str], Callable[[list[Any]], None]] | None:
    """A :data:`lockgate.ratelimit.Rider`: a cached view's two reads, to travel
    in the rate limiter's round trip (the same Redis holds both)."""
    if request.method != "GET" or not current_app.config["LOCKGATE_CACHE_ENABLED"]:
        return None
    view = current_app.view_functions.get(request.endpoint or "")
    resource = getattr(view, CACHED_ATTR, None)
    if resource is None:
        return None
    backend: Any = _cache()  # a cachelib RedisCache: riders ride on Redis only
    prefix = backend.key_prefix if isinstance(backend.key_prefix, str) else backend.key_prefix()
    keys = _keys(resource, getattr(view, QUERY_ATTR, None))

    def accept(values: list[Any]) -> None:
        # Decoded by the view, under the same failure handling as its own reads.
        request.environ[PREFETCHED_KEY] = (
            keys,
            lambda: [backend.serializer.loads(value) for value in values],
        )

    return [prefix + key for key in keys], accept


def _conditional(response: Response) -> Response:
    """Strong ETag and 304 for successful GETs; ``Cache-Control`` per route."""
    if request.method not in ("GET", "HEAD") or response.status_code != 200:
        return response
    if response.direct_passthrough or response.is_streamed:
        return response
    view = current_app.view_functions.get(request.endpoint or "")
    control = getattr(view, CONTROL_ATTR, None) or current_app.config["LOCKGATE_CACHE_CONTROL"]
    response.headers.setdefault("Cache-Control", control)
    if "ETag" not in response.headers:
        response.add_etag()
    response.make_conditional(request)
    return response
