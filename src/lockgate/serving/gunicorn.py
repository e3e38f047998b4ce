"""Gunicorn (``--server gunicorn``, the default): in this process, its master our own.

Gunicorn runs in-process: :class:`DrainingArbiter` is its master with the
drain added to SIGTERM (flag, ``drain_delay`` seconds of serving, then
gunicorn's own graceful stop, ``graceful_timeout``). Workers are ``gthread``;
``child_exit`` marks each exited worker dead for Prometheus' multiprocess
mode, and gunicorn's own log lines are JSON (``logconfig_dict``).

A malformed body (a chunk size that is not hex) makes gunicorn raise its own
``ParseException`` from ``wsgi.input.read()``; :func:`~.inputs.guard_input`
makes it a 400.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

from ..runtime.logs import logging_config
from .inputs import guard_input
from .options import ServeOptions
from .rundir import load_target, mark_dead, mark_draining

__all__ = ["serve_gunicorn"]


def serve_gunicorn(options: ServeOptions, run_dir: Path) -> int:
    """Serve ``options.target`` under gunicorn until SIGTERM or SIGINT.

    Gunicorn forks its workers inside this call: in a worker it returns (or
    raises ``SystemExit``) when that worker exits.
    """
    from gunicorn.app.base import BaseApplication
    from gunicorn.arbiter import Arbiter
    from gunicorn.http.errors import ParseException

    class DrainingArbiter(Arbiter):  # type: ignore[misc]
        """Gunicorn's master, with a drain before the graceful stop on SIGTERM."""

        def handle_term(self) -> None:
            mark_draining()
            self.log.info("SIGTERM: /readyz is 503, draining for %ss", options.drain_delay)
            # Workers keep serving while the master waits; then the usual graceful stop.
            time.sleep(options.drain_delay)
            raise StopIteration

    def child_exit(server: Any, worker: Any) -> None:
        mark_dead(worker.pid)

    class Application(BaseApplication):  # type: ignore[misc]
        def load_config(self) -> None:
            settings = {
                "bind": [options.bind] + ([f"unix:{options.uds}"] if options.uds else []),
                "workers": options.workers,
                "threads": options.thread_count,
                "worker_class": "gthread",
                "graceful_timeout": math.ceil(options.graceful_timeout),
                "timeout": max(30, int(options.graceful_timeout) + 5),
                "child_exit": child_exit,
                "accesslog": None,  # the app logs each request as a JSON line
                "logconfig_dict": logging_config("gunicorn.error"),
                "proc_name": "lockgate",
                # One control socket per server: the default, ~/.gunicorn/gunicorn.ctl,
                # is shared by every gunicorn of the user and the last one started wins.
                "control_socket": str(run_dir / "gunicorn.ctl"),
            }
            for key, value in settings.items():
                self.cfg.set(key, value)

        def load(self) -> Any:
            return guard_input(load_target(options.target), malformed=(ParseException,))

        def run(self) -> None:
            DrainingArbiter(self).run()

    try:
        Application().run()
    except SystemExit as stop:
        return int(stop.code or 0)
    return 0
