"""Cached reads on Memcached (``LOCKGATE_CACHE_URL=memcached://host:port``).

cachelib's own ``MemcachedCache`` drives pylibmc or python-memcached; this is
the same cachelib interface over pymemcache, the maintained pure-Python
client (no C build, timeouts and retries of its own). Limits stay on Redis:
Memcached has no atomic "increment and tell the TTL", so it only holds
entries and generation counters.
"""

from __future__ import annotations

import hashlib
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

from cachelib import BaseCache
from pymemcache.client.hash import HashClient
from pymemcache.serde import pickle_serde

from ..errors import ConfigurationError

__all__ = ["MemcachedCache", "memcached_cache"]


class MemcachedCache(BaseCache):
    """A cachelib cache on pymemcache; keys carry ``key_prefix``."""

    def __init__(self, client: HashClient, key_prefix: str = "", default_timeout: int = 300):
        super().__init__(default_timeout)
        self.client = client
        self.key_prefix = key_prefix

    def _key(self, key: str) -> str:
        """Memcached keys are at most 250 bytes of printable ASCII without
        spaces; a path or query outside that is hashed (a client cannot make a
        key the server refuses)."""
        full = self.key_prefix + key
        if len(full) > 200 or not all("!" <= char <= "~" for char in full):
            return f"{self.key_prefix}sha256:{hashlib.sha256(key.encode()).hexdigest()}"
        return full

    def _expire(self, timeout: int | timedelta | None) -> int:
        if isinstance(timeout, timedelta):
            timeout = int(timeout.total_seconds())
        return int(self._normalize_timeout(timeout))

    def get(self, key: str) -> Any:
        return self.client.get(self._key(key))

    def get_many(self, *keys: str) -> list[Any]:
        found = self.client.get_many([self._key(k) for k in keys])
        return [found.get(self._key(k)) for k in keys]

    def set(self, key: str, value: Any, timeout: int | timedelta | None = None) -> bool:
        expire = self._expire(timeout)
        return bool(self.client.set(self._key(key), value, expire=expire, noreply=False))

    def add(self, key: str, value: Any, timeout: int | timedelta | None = None) -> bool:
        expire = self._expire(timeout)
        return bool(self.client.add(self._key(key), value, expire=expire, noreply=False))

    def delete(self, key: str) -> bool:
        return bool(self.client.delete(self._key(key), noreply=False))

    def has(self, key: str) -> bool:
        return self.get(key) is not None

    def inc(self, key: str, delta: int = 1) -> int | None:
        """Increment a counter, creating it when absent (Memcached's ``incr``
        alone fails on a missing key, which would lose an invalidation)."""
        name = self._key(key)
        found = self.client.incr(name, delta, noreply=False)
        if found is None:
            # An int is stored as its digits, which ``incr`` understands.
            if self.client.add(name, delta, expire=0, noreply=False):
                return delta
            found = self.client.incr(name, delta, noreply=False)
        return None if found is None else int(found)

    def close(self) -> None:
        self.client.close()

    def clear(self) -> bool:
        return bool(self.client.flush_all(noreply=False))


def memcached_cache(url: str, key_prefix: str, ttl: int) -> MemcachedCache:
    """A cache for ``memcached://host:port[,host:port...]``.

    :raises ConfigurationError: a URL without a host.
    """
    servers = []
    for part in url.removeprefix("memcached://").split(","):
        parsed = urlsplit(f"//{part}")
        if not parsed.hostname:
            raise ConfigurationError(f"LOCKGATE_CACHE_URL {url!r} names no memcached host")
        servers.append((parsed.hostname, parsed.port or 11211))
    client = HashClient(
        servers,
        serde=pickle_serde,
        connect_timeout=1,
        timeout=1,
        use_pooling=True,
        # A down server raises (and the cache degrades to misses) rather than
        # being silently skipped for a while.
        ignore_exc=False,
        retry_attempts=1,
    )
    return MemcachedCache(client, key_prefix, ttl)
