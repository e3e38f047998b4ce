"""What every server shares: the run directory, the drain flag, the app factory.

The run directory holds the drain flag (``LOCKGATE_DRAIN_FILE``, read by
``/readyz``), Prometheus' multiprocess files (``PROMETHEUS_MULTIPROC_DIR``,
wiped at start) and the server's control files. Workers inherit both
variables, so every worker of one server sees the same flag and writes its
metrics to the same directory.
"""

from __future__ import annotations

import importlib
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from ..errors import ConfigurationError
from ..runtime.health import DRAIN_FILE_ENV
from ..runtime.logs import logging_config

__all__ = [
    "configure_supervisor_logs",
    "json_formatter",
    "load_target",
    "log",
    "mark_dead",
    "mark_draining",
    "prepare",
]

#: The serving supervisor's own lines (drain, stop), JSON like the app's.
log = logging.getLogger("lockgate.serving")


def prepare() -> Path:
    """Create the run directory and point the drain flag and metrics at it."""
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


def mark_draining() -> None:
    """Raise the drain flag: from now on ``/readyz`` answers 503 ``draining``."""
    flag = os.environ.get(DRAIN_FILE_ENV)
    if flag:
        Path(flag).touch()


def mark_dead(pid: int) -> None:
    """Tell Prometheus' multiprocess mode that worker ``pid`` has exited: its
    live gauges leave the sums (its counters stay, as they must)."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]


def load_target(target: str) -> Any:
    """Import ``module:factory`` and call the factory (a ``()`` suffix is allowed).

    :raises ConfigurationError: ``target`` has no ``:``.
    """
    module_name, _, attr = target.partition(":")
    if not attr:
        raise ConfigurationError(f"{target!r} is not module:factory")
    factory = getattr(importlib.import_module(module_name), attr.removesuffix("()"))
    return factory()


def configure_supervisor_logs() -> None:
    """The supervisor's lines as JSON on stderr, in the app's shape."""
    import logging.config

    logging.config.dictConfig(logging_config(log.name))


def json_formatter() -> logging.Formatter:
    """The JSON formatter of :func:`logging_config`, for servers that take a
    ``dictConfig`` from a file (granian's ``--log-config``) and so can only
    name a factory: ``{"()": "lockgate.serving.rundir.json_formatter"}``."""
    spec = dict(logging_config()["formatters"]["json"])
    factory = spec.pop("()")
    formatter: logging.Formatter = factory(**spec)
    return formatter
