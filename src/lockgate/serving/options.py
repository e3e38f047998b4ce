"""What ``lockgate serve`` is asked to do, and the refusal of settings that cannot work."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from ..errors import ConfigurationError

__all__ = ["DEFAULT_THREADS", "MAX_UDS_PATH", "SERVERS", "ServeOptions", "check_options"]

#: The servers ``lockgate serve --server`` runs.
SERVERS = ("gunicorn", "granian", "uwsgi")
#: Threads per worker when ``--threads`` is not given (see :class:`ServeOptions`).
DEFAULT_THREADS = {"gunicorn": 8, "granian": 2, "uwsgi": 4}
#: The longest Unix socket path Linux takes (``sun_path`` is 108 bytes, NUL included).
MAX_UDS_PATH = 107


@dataclass(frozen=True)
class ServeOptions:
    """How to serve a WSGI app in production.

    :param target: ``"module:factory"``; the factory is called with no
        arguments, once in each worker.
    :param server: ``gunicorn``, ``granian`` or ``uwsgi``.
    :param workers: worker processes.
    :param threads: threads per worker (gunicorn ``gthread``, granian blocking
        threads, uWSGI request threads); ``None``: the server's own best.
        Gunicorn 8: its threads parse HTTP in Python and wait on the socket.
        Granian 2: its Rust side does that I/O, so more Python threads only
        contend for the GIL (measured: 2 threads serve about 1.3x what 8 do).
        uWSGI 4: it parses HTTP in C, as granian does, but each request
        thread also reads its request and writes its response itself. On the
        fast route 2, 4 and 8 threads served within noise of each other (2
        workers, wrk -c16, 2 shared cores, 2026-12-01); 4 lets requests that
        wait on the database or Redis overlap without the GIL contention that
        granian showed past 2.
    :param bind: ``host:port``.
    :param uds: a Unix socket path to listen on as well (gunicorn only):
        ``lockgate up``'s nginx reaches each replica through one, so a
        rollout can swap the replica behind a path without reloading nginx.
    :param graceful_timeout: seconds in-flight requests get once accepting stops.
    :param drain_delay: seconds between SIGTERM and accepting stopping, with
        ``/readyz`` already 503.
    """

    target: str
    server: str = "gunicorn"
    workers: int = 1
    threads: int | None = None
    bind: str = "127.0.0.1:8080"
    uds: str | None = None
    graceful_timeout: float = 30.0
    drain_delay: float = 5.0

    @property
    def thread_count(self) -> int:
        """``threads``, or the server's default."""
        return self.threads or DEFAULT_THREADS[self.server]


def check_options(options: ServeOptions, environ: Mapping[str, str] | None = None) -> None:
    """Refuse settings that cannot work.

    :raises ConfigurationError: an unknown server, a bad bind, a Unix socket
        for another server than gunicorn or too long a path, or several
        workers without ``REDIS_URL``.
    """
    env = os.environ if environ is None else environ
    if options.server not in SERVERS:
        raise ConfigurationError(f"--server must be one of {', '.join(SERVERS)}")
    if options.workers < 1 or (options.threads is not None and options.threads < 1):
        raise ConfigurationError("--workers and --threads must be at least 1")
    host, _, port = options.bind.rpartition(":")
    if not host or not port.isdigit():
        raise ConfigurationError(f"--bind {options.bind!r} is not host:port")
    if options.uds is not None:
        if options.server != "gunicorn":
            raise ConfigurationError("--uds needs --server gunicorn")
        if len(os.fsencode(options.uds)) > MAX_UDS_PATH:
            raise ConfigurationError(
                f"--uds {options.uds!r} is longer than the {MAX_UDS_PATH} bytes a "
                "Unix socket path can have"
            )
    if options.workers > 1 and not env.get("REDIS_URL"):
        raise ConfigurationError(
            f"--workers {options.workers} needs REDIS_URL: without Redis every worker "
            "keeps its own rate-limit counters and cache, so limits would be multiplied "
            "by the worker count and a write in one worker would leave stale reads in "
            "the others. Set REDIS_URL=redis://... or run one worker."
        )
