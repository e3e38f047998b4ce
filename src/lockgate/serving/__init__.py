"""Production serving: gunicorn (default), granian or uWSGI, several workers, a graceful drain.

On SIGTERM every server first *drains*: a flag file appears, ``/readyz``
answers 503 at once so the orchestrator stops sending traffic, and requests
keep being served for ``drain_delay`` seconds; then the server stops
accepting, lets the requests in flight finish within ``graceful_timeout``
and exits. Several workers share nothing but Redis: without ``REDIS_URL``
rate limits and caches would be per process, so more than one is refused.

=================  ==========================================================
``options``        :class:`ServeOptions`, :func:`check_options`
``rundir``         the run directory: drain flag, metrics, the app factory
``gunicorn``       in process, the master with the drain (``DrainingArbiter``)
``supervisor``     a server in a child process, with the drain around it
``granian``        granian's CLI under the supervisor
``uwsgi``          the ``uwsgi`` binary under the supervisor
=================  ==========================================================

The rule of this folder: it may import :mod:`lockgate.runtime` (the drain
flag's variable, the logging config) and the shared leaves, never
:mod:`lockgate.fleet` or any service; the app it serves is named by a
``module:factory`` string. The servers themselves are optional (the
``server`` extra) and imported only by the module that runs each.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

from .granian import serve_granian
from .gunicorn import serve_gunicorn
from .options import DEFAULT_THREADS, SERVERS, ServeOptions, check_options
from .rundir import prepare
from .uwsgi import serve_uwsgi

__all__ = ["DEFAULT_THREADS", "SERVERS", "ServeOptions", "check_options", "serve"]

_RUNNERS: dict[str, Callable[[ServeOptions, Path], int]] = {
    "gunicorn": serve_gunicorn,
    "granian": serve_granian,
    "uwsgi": serve_uwsgi,
}


def serve(options: ServeOptions) -> int:
    """Serve until SIGTERM or SIGINT; returns the exit status.

    :raises ConfigurationError: as :func:`check_options`.
    """
    check_options(options)
    run_dir = prepare()
    owner = os.getpid()
    try:
        return _RUNNERS[options.server](options, run_dir)
    finally:
        # Gunicorn forks its workers inside this call, and a worker leaves by
        # raising SystemExit through here: only the master may remove the run
        # directory, or the first worker to exit would end the drain and wipe
        # the other workers' metrics.
        if os.getpid() == owner:
            shutil.rmtree(run_dir, ignore_errors=True)
