"""Granian (``--server granian``): its own CLI in a child process, under the supervisor.

Granian's workers are processes it spawns; each imports the app factory
itself (``--factory``). Its graceful stop is SIGTERM: it stops accepting and
gives the workers ``--workers-kill-timeout`` seconds. Its own log lines are
JSON like the app's: ``--log-config`` takes a ``dictConfig`` file, whose
formatter is :func:`~.rundir.json_formatter`.
"""

from __future__ import annotations

import importlib.util
import json
import signal
import subprocess
import sys
from pathlib import Path

from ..runtime.logs import logging_config
from .options import ServeOptions
from .rundir import json_formatter
from .supervisor import supervise

__all__ = ["serve_granian"]


def serve_granian(options: ServeOptions, run_dir: Path) -> int:
    """Serve ``options.target`` under granian until SIGTERM or SIGINT.

    :raises ModuleNotFoundError: granian is not installed (the ``server`` extra).
    """
    if importlib.util.find_spec("granian") is None:
        # Here, not in the child, whose failure would be a traceback in its log.
        raise ModuleNotFoundError("No module named 'granian'", name="granian")
    host, _, port = options.bind.rpartition(":")
    log_config = run_dir / "granian-logging.json"
    log_config.write_text(json.dumps(_log_config()))
    command = [
        sys.executable,
        "-m",
        "granian",
        "--interface",
        "wsgi",
        "--factory",
        "--host",
        host,
        "--port",
        port,
        "--workers",
        str(options.workers),
        "--blocking-threads",
        str(options.thread_count),
        "--workers-kill-timeout",
        str(int(options.graceful_timeout)),
        "--no-ws",
        # A worker that dies is replaced, as gunicorn's and uWSGI's are; without
        # this granian stops altogether.
        "--respawn-failed-workers",
        "--log-config",
        str(log_config),
        options.target,
    ]

    def stop(process: subprocess.Popen[bytes]) -> None:
        process.send_signal(signal.SIGTERM)

    return supervise(command, options, stop, "granian")


def _log_config() -> dict[str, object]:
    """Granian's loggers (``_granian``, ``granian.access``) as JSON lines on stderr."""
    factory = f"{json_formatter.__module__}.{json_formatter.__qualname__}"
    return logging_config("_granian", "granian.access", formatter={"()": factory})
