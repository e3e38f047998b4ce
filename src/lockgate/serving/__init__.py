"""Production serving: gunicorn (default) or granian, several workers, a graceful drain.

On SIGTERM the server first *drains*: a flag file appears, ``/readyz`` answers
503 at once so the orchestrator stops sending traffic, and requests keep being
served for ``drain_delay`` seconds; then the server stops accepting, lets the
requests in flight finish within ``graceful_timeout`` and exits.

Several workers share nothing but Redis: without ``REDIS_URL`` rate limits and
caches would be per process, so more than one worker is refused.
"""

from __future__ import annotations

import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ConfigurationError
from ..runtime.health import DRAIN_FILE_ENV
from ..runtime.logs import logging_config

__all__ = ["ServeOptions", "check_options", "serve"]
SERVERS = ("gunicorn", "granian")
#: Threads per worker when ``--threads`` is not given.
DEFAULT_THREADS = {"gunicorn": 8, "granian": 2}


@dataclass(frozen=True)
class ServeOptions:
    """How to serve a WSGI app in production.

    :param target: ``"module:factory"``; the factory is called with no arguments.
    :param server: ``gunicorn`` or ``granian``.
    :param workers: worker processes.
    :param threads: threads per worker (gunicorn ``gthread``; granian blocking
        threads); ``None``: the server's own best, 8 for gunicorn, 2 for granian,
        whose Rust side does the I/O that gunicorn's threads wait on, so more
        Python threads only contend for the GIL (measured: 2 threads serve
        about 1.3x what 8 do).
    :param bind: ``host:port``.
    :param graceful_timeout: seconds in-flight requests get once accepting stops.
    :param drain_delay: seconds between SIGTERM and accepting stopping, with
        ``/readyz`` already 503.
    """

    target: str
    server: str = "gunicorn"
    workers: int = 1
    threads: int | None = None
    bind: str = "127.0.0.1:8080"
    graceful_timeout: float = 30.0
    drain_delay: float = 5.0


def check_options(options: ServeOptions, environ: dict[str, str] | None = None) -> None:
    """Refuse settings that cannot work.

    :raises ConfigurationError: an unknown server, a bad bind, or several
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
    if options.workers > 1 and not env.get("REDIS_URL"):
        raise ConfigurationError(
            f"--workers {options.workers} needs REDIS_URL: without Redis every worker "
            "keeps its own rate-limit counters and cache, so limits would be multiplied "
            "by the worker count and a write in one worker would leave stale reads in "
            "the others. Set REDIS_URL=redis://... or run one worker."
        )


def _mark_draining() -> None:
    flag = os.environ.get(DRAIN_FILE_ENV)
    if flag:
        Path(flag).touch()


def _prepare(options: ServeOptions) -> Path:
    """Set up the run directory: the drain flag and Prometheus' multiprocess files."""
    run_dir = Path(tempfile.mkdtemp(prefix="lockgate-serve-"))
    os.environ[DRAIN_FILE_ENV] = str(run_dir / "draining")
    metrics_dir = Path(os.environ.get("PROMETHEUS_MULTIPROC_DIR") or run_dir / "metrics")
    # Counters from an earlier run would be summed into this one's.
    shutil.rmtree(metrics_dir, ignore_errors=True)
    metrics_dir.mkdir(parents=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
    # prometheus_client picks its value class when first imported, which the
    # fleet's services may already have done: pick again, so the metrics the
    # workers create are written to the shared directory.
    from prometheus_client import values

    values.ValueClass = values.get_value_class()  # type: ignore[no-untyped-call]
    return run_dir


def serve(options: ServeOptions) -> int:
    """Serve until SIGTERM or SIGINT; returns the exit status."""
    check_options(options)
    run_dir = _prepare(options)
    owner = os.getpid()
    try:
        if options.server == "gunicorn":
            return _serve_gunicorn(options, run_dir)
        return _serve_granian(options)
    finally:
        # Gunicorn forks its workers inside this call, and a worker leaves by
        # raising SystemExit through here: only the master may remove the run
        # directory, or the first worker to exit would end the drain and wipe
        # the other workers' metrics.
        if os.getpid() == owner:
            shutil.rmtree(run_dir, ignore_errors=True)


def _serve_gunicorn(options: ServeOptions, run_dir: Path) -> int:
    from gunicorn.app.base import BaseApplication
    from gunicorn.arbiter import Arbiter

    class DrainingArbiter(Arbiter):  # type: ignore[misc]
        """Gunicorn's master, with a drain before the graceful stop on SIGTERM."""

        def handle_term(self) -> None:
            _mark_draining()
            self.log.info("SIGTERM: /readyz is 503, draining for %ss", options.drain_delay)
            # Workers keep serving while the master waits; then the usual graceful stop.
            time.sleep(options.drain_delay)
            raise StopIteration

    def child_exit(server: Any, worker: Any) -> None:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)  # type: ignore[no-untyped-call]

    class Application(BaseApplication):  # type: ignore[misc]
        def load_config(self) -> None:
            settings = {
                "bind": options.bind,
                "workers": options.workers,
                "threads": options.threads or DEFAULT_THREADS["gunicorn"],
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
            return _load_target(options.target)

        def run(self) -> None:
            DrainingArbiter(self).run()

    try:
        Application().run()
    except SystemExit as stop:
        return int(stop.code or 0)
    return 0


def _serve_granian(options: ServeOptions) -> int:
    host, _, port = options.bind.rpartition(":")
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
        str(options.threads or DEFAULT_THREADS["granian"]),
        "--workers-kill-timeout",
        str(int(options.graceful_timeout)),
        "--no-ws",
        options.target,
    ]
    process = subprocess.Popen(command)
    stopping: list[int] = []

    def on_signal(signum: int, frame: Any) -> None:
        stopping.append(signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    while process.poll() is None and not stopping:
        time.sleep(0.1)
    if stopping:
        if stopping[0] == signal.SIGTERM:
            _mark_draining()
            time.sleep(options.drain_delay)
        process.send_signal(signal.SIGINT if stopping[0] == signal.SIGINT else signal.SIGTERM)
        try:
            return process.wait(timeout=options.graceful_timeout + 5)
        except subprocess.TimeoutExpired:
            process.kill()
            return process.wait()
    return process.returncode


def _load_target(target: str) -> Any:
    import importlib

    module_name, _, attr = target.partition(":")
    if not attr:
        raise ConfigurationError(f"{target!r} is not module:factory")
    factory = getattr(importlib.import_module(module_name), attr.removesuffix("()"))
    return factory()
