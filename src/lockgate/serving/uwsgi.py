"""uWSGI (``--server uwsgi``): the ``uwsgi`` binary in a child process, under the supervisor.

uWSGI's signals do not mean what an orchestrator expects (uWSGI 2.0):
SIGTERM *reloads* (with ``--die-on-term``: kills), SIGINT and SIGQUIT kill
the workers at once, SIGHUP reloads gracefully. Its only graceful *stop* is
the master FIFO's ``q``: the master sends each worker SIGHUP, a worker stops
taking requests and exits once its threads have finished the ones in flight.
So the supervisor owns SIGTERM (drain, then ``q``) and SIGINT (forwarded:
uWSGI's fast stop), and ``--die-on-term`` makes a SIGTERM that reaches uWSGI
by another way stop it rather than reload it. uWSGI's ``q`` waits for its
workers without a limit (``--worker-reload-mercy`` is not applied while it
waits), so the supervisor's ``graceful_timeout`` is what bounds it.

The options, and why:

- ``--http-socket``: workers speak HTTP themselves (no separate router process).
- ``--master --processes N --threads T``: T request threads in each worker;
  ``--lazy-apps``: each worker imports the app after the fork, as gunicorn's
  and granian's do, so no connection or thread is shared across a fork.
- ``--module lockgate.serving.uwsgi:create_app()``: uWSGI calls
  :func:`create_app` in each worker, which builds ``LOCKGATE_SERVE_TARGET``.
- ``--need-app``: exit when the app cannot load, rather than serve 500s.
- ``--home``: the embedded interpreter uses this virtualenv.
- ``--buffer-size 65535`` (its maximum): the request line and headers must fit
  in this buffer; at the default 4 KiB a large cookie or token is refused.
- ``--disable-logging``: the app writes one JSON line per request.
- ``--add-header "Connection: close"``: the HTTP socket closes the
  connection after each response (keep-alive, ``--http11-socket``, would hold
  a request thread per idle connection) but does not say so; a client that
  reuses the connection then reads a reset. Saying so makes it reconnect.
- ``--thunder-lock``: one worker at a time in ``accept()``, no thundering herd.
- ``--single-interpreter``: one Python interpreter per worker, as everywhere else.
- ``--listen``: gunicorn's backlog (2048) rather than uWSGI's 100, capped by
  ``net.core.somaxconn``, above which uWSGI refuses to start.

A chunked request body: uWSGI's HTTP socket leaves it undecoded, and with no
``Content-Length`` the app would read an empty body. :func:`create_app` gives
such a request a ``wsgi.input`` decoded by ``uwsgi.chunked_read()``, which
raises ``OSError`` on a chunk it cannot parse: a 400 (:mod:`.inputs`). Its
parser is lax: a size line is read as far as it is hex (``zz`` is 0, so the
body ends there, empty), and a chunk extension (``;name``) is refused.

Prometheus' multiprocess mode: the supervisor marks each exited worker dead
(:mod:`.supervisor`). uWSGI's own ``uwsgi.atexit`` hook runs only when a
worker exits cleanly, not when one is killed (harakiri, no mercy), so the
parent's watch is used instead of it.

uWSGI's own lines (its banner, worker spawns) are plain text on stderr: its
JSON encoder needs the log master, which would encode the app's JSON lines a
second time, and routing lines by pattern needs a PCRE build.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from .inputs import guard_input
from .options import ServeOptions
from .rundir import load_target
from .supervisor import supervise

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

__all__ = ["TARGET_ENV", "create_app", "serve_uwsgi"]

#: The ``module:factory`` that :func:`create_app` builds in each worker.
TARGET_ENV = "LOCKGATE_SERVE_TARGET"


def serve_uwsgi(options: ServeOptions, run_dir: Path) -> int:
    """Serve ``options.target`` under uWSGI until SIGTERM or SIGINT.

    :raises ModuleNotFoundError: uWSGI is not installed (the ``server`` extra).
    """
    fifo = run_dir / "uwsgi.fifo"
    command = [
        _binary(),
        "--strict",
        "--master",
        "--http-socket",
        options.bind,
        "--processes",
        str(options.workers),
        "--threads",
        str(options.thread_count),
        "--lazy-apps",
        "--module",
        f"{__name__}:{create_app.__name__}()",
        "--need-app",
        "--home",
        sys.prefix,
        "--buffer-size",
        "65535",
        "--master-fifo",
        str(fifo),
        "--die-on-term",
        "--worker-reload-mercy",
        str(int(options.graceful_timeout)),
        "--disable-logging",
        "--add-header",
        "Connection: close",
        "--thunder-lock",
        "--single-interpreter",
        "--listen",
        str(_backlog()),
        "--procname-prefix-spaced",
        "lockgate",
    ]

    def stop(process: subprocess.Popen[bytes]) -> None:
        # "q": graceful shutdown. Opened non-blocking would fail if uWSGI had
        # not made the FIFO yet; it has, since it is serving.
        with fifo.open("w") as pipe:
            pipe.write("q")

    os.environ[TARGET_ENV] = options.target
    return supervise(command, options, stop, "uwsgi")


def create_app() -> WSGIApplication:
    """The app of ``LOCKGATE_SERVE_TARGET``, reading chunked bodies through uWSGI.

    Called by uWSGI in each worker (``--lazy-apps``), where ``import uwsgi``
    is uWSGI's embedded module.
    """
    import uwsgi

    app: WSGIApplication = guard_input(load_target(os.environ[TARGET_ENV]))

    def application(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        codings = environ.get("HTTP_TRANSFER_ENCODING", "").lower().split(",")
        if codings[-1].strip() == "chunked":
            environ["wsgi.input"] = io.BufferedReader(_Chunks(uwsgi.chunked_read))
            # Read to the end, not to a length: the body says where it ends.
            environ["wsgi.input_terminated"] = True
        return app(environ, start_response)

    return application


class _Chunks(io.RawIOBase):
    """A chunked body as a stream; a malformed chunk raises ``OSError``."""

    def __init__(self, read_chunk: Callable[[], bytes]) -> None:
        self._read_chunk = read_chunk
        self._pending = b""
        self._ended = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: WriteableBuffer) -> int:
        while not self._pending and not self._ended:
            self._pending = self._read_chunk()  # b"" after the last chunk
            self._ended = not self._pending
        view = memoryview(buffer).cast("B")
        size = min(len(view), len(self._pending))
        view[:size] = self._pending[:size]
        self._pending = self._pending[size:]
        return size


def _backlog(wanted: int = 2048) -> int:
    try:
        return min(wanted, int(Path("/proc/sys/net/core/somaxconn").read_text()))
    except (OSError, ValueError):
        return 100  # uWSGI's own default


def _binary() -> str:
    """The ``uwsgi`` installed beside this Python (the ``server`` extra)."""
    found = shutil.which("uwsgi", path=str(Path(sys.executable).parent)) or shutil.which("uwsgi")
    if found is None:
        raise ModuleNotFoundError("No module named 'uwsgi'", name="uwsgi")
    return found
