"""``lockgate up``: the production topology on one machine.

nginx on the public port, with the config :func:`~.gateway.render_nginx`
makes from the manifest (in ``$LOCKGATE_DATA_DIR/up/``); every service
replica, and every version pool's, a ``lockgate serve --service NAME``
process of its own on a private port (``[gateway] upstream_port`` onwards);
the job workers; Redis, PostgreSQL and RabbitMQ from the environment when
``REDIS_URL``, ``DATABASE_URL`` and ``LOCKGATE_JOBS_BROKER_URL`` are set.

The schemas are upgraded and the services' own clients made once, before any
replica starts, so replicas never race over migrations or revoke each other's
secrets. The issuer is the public address (tokens name what clients call),
and services call each other through the gateway too. SIGTERM or Ctrl-C
stops everything in order: the replicas drain first (``/readyz`` answers 503
while nginx still sends them what is in flight), then nginx stops gracefully,
then the job workers.

Each replica also listens on a Unix socket of its own, and nginx's
upstream names none of them: it names *slots*, one symlink per replica
(``<pool>.<n>``) to the socket of the replica serving there now. nginx
follows the link at each connect(), so pointing a slot at another replica
(a rename, atomic) changes the upstream without a reload: the slot is to
the replica what a Service's address is to its pods. That matters because
a reload cannot be clean (nginx 1.22 has no upstream API): its old workers
close the idle kept-alive client connections they hold, and a request a
client sent on one at that instant is never read, a reset.

``lockgate rollout SERVICE`` replaces a service's replicas while it runs, as
a Deployment with ``maxUnavailable: 0`` does: it asks over the control
socket (``up/control.sock``, one JSON line in, JSON lines of progress out)
and :meth:`Topology.rollout` does the work, one replica at a time: start the
new one, wait for its ``/readyz`` on its socket, point the slot at it (the
old one is out of the upstream in the same step: nginx connects to it no
more), and only then SIGTERM the old one. It drains what nginx still has on
the connections it kept alive to it (gunicorn answers those with
``Connection: close`` once stopping, and nginx drops an idle one after 1 s)
while the next one starts; the rollout ends when all have exited.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx

from ..config import data_dir
from ..errors import ConfigurationError
from ..serving.options import MAX_UDS_PATH
from .gateway import local_addresses, pools, render_nginx
from .manifest import Fleet

__all__ = ["RolloutError", "Topology", "ask_up", "control_socket", "describe"]

#: A progress message of a rollout (``{"event": ...}``), or its last answer.
Message = dict[str, Any]


class RolloutError(RuntimeError):
    """A rollout that could not go on; the replicas it had not replaced yet stay."""


#: The control socket's name, in ``$LOCKGATE_DATA_DIR/up/``.
CONTROL_SOCKET = "control.sock"


def control_socket() -> Path:
    """Where the running ``lockgate up`` of this data directory listens."""
    return data_dir() / "up" / CONTROL_SOCKET


def ask_up(request: Message, path: Path | None = None) -> Iterator[Message]:
    """Send ``request`` to the running ``lockgate up``; its answers, one a line.

    :raises FileNotFoundError: no control socket there.
    :raises ConnectionRefusedError: a stale one (its ``lockgate up`` was killed).
    """
    connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        connection.connect(str(path or control_socket()))
        connection.sendall(json.dumps(request).encode() + b"\n")
    except OSError:
        connection.close()
        raise
    return _answers(connection)


def _answers(connection: socket.socket) -> Iterator[Message]:
    with connection, connection.makefile("rb") as stream:
        for line in stream:
            message: Message = json.loads(line)
            yield message


def describe(event: Message) -> str:
    """One progress message of a rollout, as a person reads it."""
    pool, address = event.get("pool", "?"), event.get("address", "?")
    texts = {
        "starting": f"starting a replica on {address} (replaces {event.get('replaces')})",
        "ready": f"{address} is ready (pid {event.get('pid')})",
        "added": f"{address} added to nginx's upstream (slot {event.get('slot')}, no reload)",
        "removed": f"{address} removed from nginx's upstream (slot {event.get('slot')})",
        "draining": f"{address} draining (SIGTERM to pid {event.get('pid')})",
        "stopped": f"{address} stopped (exit {event.get('returncode')})",
        "killed": f"{address} killed with SIGKILL while still in the upstream (drill)",
    }
    return f"{pool}: {texts.get(str(event.get('event')), json.dumps(event))}"


def _nginx() -> str:
    found = shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if Path(p).exists()), None
    )
    if found is None:
        raise ConfigurationError("lockgate up needs nginx (make up installs it: apt-get nginx)")
    return found


def _wait_ready(uds: Path, process: subprocess.Popen[bytes], timeout: float) -> None:
    """Until ``/readyz`` answers 200 on the replica's socket (where nginx will
    reach it); :class:`RolloutError` if it exits or never does."""
    deadline = time.monotonic() + timeout
    with httpx.Client(transport=httpx.HTTPTransport(uds=str(uds)), timeout=1) as http:
        while True:
            if process.poll() is not None:
                raise RolloutError(f"the replica on {uds} exited ({process.returncode})")
            with contextlib.suppress(httpx.TransportError):
                if http.get("http://replica/readyz").status_code == 200:
                    return
            if time.monotonic() > deadline:
                raise RolloutError(f"the replica on {uds} was not ready within {timeout:.0f} s")
            time.sleep(0.1)


def _point(slot: Path, target: Path) -> None:
    """Make ``slot`` lead to ``target`` in one step (a rename): each
    connect() through it reaches one replica or the other, never neither."""
    staged = slot.with_name(f".{slot.name}.next")
    with contextlib.suppress(FileNotFoundError):
        staged.unlink()
    staged.symlink_to(target.name)  # beside it
    os.replace(staged, slot)


def _kill(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL to the replica's whole group (gunicorn's workers with it), then reap it."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


class Topology:
    """The processes of ``lockgate up``, started and stopped in order."""

    def __init__(self, fleet: Fleet, manifest: Path, *, host: str, port: int) -> None:
        self.fleet = fleet
        self.manifest = manifest
        self.host, self.port = host, port
        self.base = f"http://{host}:{port}"
        self.folder = data_dir() / "up"
        self.folder.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX) as probe:
            probe.connect(str(self.folder / CONTROL_SOCKET))
            raise ConfigurationError(f"another lockgate up runs on {self.folder}")
        self.sockets = self._socket_folder()
        #: Each pool's replicas, by slot: (address, process); the n-th serves
        #: behind ``<pool>.<n>`` in :attr:`sockets`.
        self.replicas: dict[str, list[tuple[str, subprocess.Popen[bytes]]]] = {}
        self.nginx: subprocess.Popen[bytes] | None = None
        self.workers: Any = None
        self.drain_delay, self.graceful_timeout = 2.0, 10.0
        # Guards replicas, _processes and _stopping: the control thread's
        # rollouts change them while the main thread may be stopping.
        self._state = threading.Lock()
        self._rolling = threading.Lock()
        self._rollout_of: str | None = None
        self._stopping = False
        #: Every replica process started, in or out of the upstream, for stop().
        self._processes: list[subprocess.Popen[bytes]] = []
        self._control: socket.socket | None = None

    @property
    def replica_count(self) -> int:
        return sum(len(replicas) for replicas in self.replicas.values())

    def _socket_folder(self) -> Path:
        """Where the slots and the replicas' sockets are: ``up/s``, or a
        private folder in the temporary directory when a path there would
        not fit a Unix socket's 107 bytes."""
        names = [f"/{pool.name}.{pool.replicas}" for pool in pools(self.fleet)]
        longest = max(len(name) for name in [*names, "/65535.sock"])
        folder = self.folder / "s"
        if len(os.fsencode(folder)) + longest > MAX_UDS_PATH:
            return Path(tempfile.mkdtemp(prefix="lockgate-up-"))
        with contextlib.suppress(FileNotFoundError):
            shutil.rmtree(folder)  # a killed lockgate up's: nothing listens there
        folder.mkdir(mode=0o700)
        return folder

    def _slot(self, pool: str, index: int) -> Path:
        return self.sockets / f"{pool}.{index}"

    def _socket(self, address: str) -> Path:
        """The Unix socket of the replica on ``address`` (its port names it)."""
        return self.sockets / f"{address.rsplit(':', 1)[1]}.sock"

    def _spawn(self, service: str, address: str) -> subprocess.Popen[bytes]:
        command = [
            sys.executable, "-m", "lockgate.fleet", "serve", "--service", service,
            "--server", "gunicorn", "--bind", address, "--uds", str(self._socket(address)),
            "--workers", "1", "--no-jobs",
            "--drain-delay", str(self.drain_delay),
            "--graceful-timeout", str(self.graceful_timeout),
            "--manifest", str(self.manifest),
        ]  # fmt: skip
        with self._state:
            if self._stopping:
                raise RolloutError("lockgate up is stopping")
            process = subprocess.Popen(command, start_new_session=True)
            self._processes = [p for p in self._processes if p.poll() is None] + [process]
        return process

    def start_replicas(self, drain_delay: float = 2.0, graceful_timeout: float = 10.0) -> None:
        self.drain_delay, self.graceful_timeout = drain_delay, graceful_timeout
        addresses = local_addresses(self.fleet)
        for pool in pools(self.fleet):
            self.replicas[pool.name] = [
                (address, self._spawn(pool.service, address)) for address in addresses[pool.name]
            ]
        deadline = time.monotonic() + 90
        for name, replicas in self.replicas.items():
            for index, (address, process) in enumerate(replicas):
                uds = self._socket(address)
                try:
                    _wait_ready(uds, process, max(0.0, deadline - time.monotonic()))
                except RolloutError as error:
                    raise RuntimeError(f"replica {name}@{address}: {error}") from None
                _point(self._slot(name, index), uds)

    def _addresses(self) -> dict[str, list[str]]:
        with self._state:
            return {name: [a for a, _ in replicas] for name, replicas in self.replicas.items()}

    def _write_config(self) -> Path:
        """Render nginx.conf, its upstreams the slots; write it only if ``nginx -t`` takes it."""
        run = self.folder / "nginx"
        run.mkdir(parents=True, exist_ok=True)
        gateway = dataclasses.replace(self.fleet.gateway, listen=f"{self.host}:{self.port}")
        fleet = dataclasses.replace(self.fleet, gateway=gateway)
        user = "root" if os.geteuid() == 0 else None
        text = render_nginx(
            fleet, run_dir=str(run), user=user, manifest=str(self.manifest),
            addresses={
                name: [f"unix:{self._slot(name, n)}" for n in range(len(replicas))]
                for name, replicas in self.replicas.items()
            } or None,
        )  # fmt: skip
        conf, candidate = self.folder / "nginx.conf", self.folder / "nginx.conf.next"
        candidate.write_text(text)
        check = subprocess.run(
            [_nginx(), "-t", "-q", "-p", str(self.folder), "-c", str(candidate)],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        if check.returncode != 0:
            raise RuntimeError(f"nginx -t refused {candidate}: {check.stderr}")
        os.replace(candidate, conf)
        return conf

    def start_nginx(self) -> None:
        conf = self._write_config()
        self.nginx = subprocess.Popen(
            [_nginx(), "-p", str(self.folder), "-c", str(conf), "-g", "daemon off;"],
            start_new_session=True,
        )
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{self.base}/healthz", timeout=1).status_code == 200:
                    return
            if self.nginx.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"nginx did not serve {self.base}: see {self.folder}/nginx/error.log"
                )
            time.sleep(0.1)

    def _free_address(self) -> str:
        taken = {self.port} | {
            int(address.rsplit(":", 1)[1])
            for pool in self._addresses().values()
            for address in pool
        }
        while True:
            with socket.socket() as probe:
                probe.bind(("127.0.0.1", 0))
                port: int = probe.getsockname()[1]
            if port not in taken:
                return f"127.0.0.1:{port}"

    def rollout(
        self, service: str, *, drain: bool = True, report: Callable[[Message], None] | None = None
    ) -> int:
        """Replace every replica of ``service``'s pools (its shared one and its
        versions'), one at a time, never with fewer ready than before; the
        number replaced.

        :param drain: ``False`` is a drill, never for use: each old replica is
            killed with SIGKILL while nginx still routes to it (a pod killed
            before its endpoint is removed), and only taken out of the
            upstream a second later. It exists so a load test can show it
            detects failures.
        :param report: called with each progress message (``{"event": ...}``).
        :raises RolloutError: an unknown service, another rollout under way,
            or a new replica that never got ready (it is killed, the old one
            stays).
        """
        names = [pool.name for pool in pools(self.fleet) if pool.service == service]
        if not names:
            known = ", ".join(dict.fromkeys(pool.service for pool in pools(self.fleet)))
            raise RolloutError(f"no service {service!r} to roll out (services: {known})")
        if not self._rolling.acquire(blocking=False):
            raise RolloutError(f"a rollout of {self._rollout_of or 'a service'} is in progress")
        report = report or (lambda message: None)
        # Old replicas out of the upstream drain while the next ones start:
        # nothing routes to them any more, so nothing waits for them but the end.
        draining: list[tuple[str, str, subprocess.Popen[bytes], float]] = []
        try:
            self._rollout_of = service
            replaced = 0
            for name in names:
                for index, old in enumerate(list(self.replicas[name])):
                    stopping = self._replace(name, index, service, old, drain, report)
                    if stopping is not None:
                        draining.append((name, old[0], stopping, time.monotonic()))
                    replaced += 1
            return replaced
        finally:
            for pool, address, process, since in draining:
                limit = since + self.drain_delay + self.graceful_timeout + 10
                try:
                    process.wait(max(0.1, limit - time.monotonic()))
                except subprocess.TimeoutExpired:
                    _kill(process)
                report({"event": "stopped", "pool": pool, "address": address,
                        "returncode": process.returncode})  # fmt: skip
            self._rollout_of = None
            self._rolling.release()

    def _replace(
        self,
        pool: str,
        index: int,
        service: str,
        old: tuple[str, subprocess.Popen[bytes]],
        drain: bool,
        report: Callable[[Message], None],
    ) -> subprocess.Popen[bytes] | None:
        """Replace ``old``, the replica in slot ``index``, by a new one; the
        old process, told to drain (or ``None``: the drill killed it)."""
        old_address, old_process = old
        address = self._free_address()
        report({"event": "starting", "pool": pool, "address": address, "replaces": old_address})
        new = self._spawn(service, address)
        try:
            _wait_ready(self._socket(address), new, 60)
        except RolloutError:
            _kill(new)
            if self._stopping:  # stop() told it to stop, as every replica
                raise RolloutError("lockgate up is stopping") from None
            raise
        report({"event": "ready", "pool": pool, "address": address, "pid": new.pid})
        if not drain:
            _kill(old_process)
            report({"event": "killed", "pool": pool, "address": old_address})
            time.sleep(1.0)  # the endpoint's removal lags the kill
        slot = self._slot(pool, index)
        with self._state:
            _point(slot, self._socket(address))
            self.replicas[pool][index] = (address, new)
        report({"event": "added", "pool": pool, "address": address, "slot": slot.name})
        report({"event": "removed", "pool": pool, "address": old_address, "slot": slot.name})
        if not drain:
            return None
        report({"event": "draining", "pool": pool, "address": old_address,
                "pid": old_process.pid})  # fmt: skip
        old_process.send_signal(signal.SIGTERM)
        return old_process

    def serve_control(self) -> Path:
        """Answer ``lockgate rollout`` on the control socket, in a thread of its own."""
        path = self.folder / CONTROL_SOCKET
        with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX) as probe:
            probe.connect(str(path))
            raise RuntimeError(f"another lockgate up answers on {path}")
        with contextlib.suppress(FileNotFoundError):
            path.unlink()  # a stale one: its lockgate up was killed
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            server.bind(str(path))
        except OSError as error:
            server.close()
            raise RuntimeError(f"cannot listen on {path}: {error}") from None
        os.chmod(path, 0o600)  # it can replace every replica: its owner only
        server.listen(8)
        self._control = server
        threading.Thread(target=self._accept, args=(server,), daemon=True).start()
        return path

    def _accept(self, server: socket.socket) -> None:
        while True:
            try:
                connection, _ = server.accept()
            except OSError:
                return  # closed by stop()
            threading.Thread(target=self._answer, args=(connection,), daemon=True).start()

    def _answer(self, connection: socket.socket) -> None:
        # A client gone mid-rollout does not stop it: the rollout goes on unseen.
        def send(message: Message) -> None:
            with contextlib.suppress(OSError):
                connection.sendall(json.dumps(message).encode() + b"\n")

        with connection:
            connection.settimeout(10)
            try:
                with connection.makefile("rb") as stream:
                    request = json.loads(stream.readline(65536))
                service, drain = request["rollout"], request.get("drain", True)
                if not isinstance(service, str) or not isinstance(drain, bool):
                    raise TypeError
            except (OSError, ValueError, KeyError, TypeError):
                send(
                    {
                        "ok": False,
                        "error": 'expected one line: {"rollout": "SERVICE", "drain": true}',
                    }
                )
                return
            try:
                replaced = self.rollout(service, drain=drain, report=send)
            except RolloutError as error:
                send({"ok": False, "error": str(error)})
            else:
                send({"ok": True, "replaced": replaced})

    def stop(self, grace: float = 20.0) -> None:
        """Replicas drain (nginx still routes in-flight work), then nginx, then workers."""
        with self._state:
            self._stopping = True  # a rollout under way starts nothing more
            processes = [p for p in self._processes if p.poll() is None]
        if self._control is not None:
            with contextlib.suppress(OSError):
                self._control.shutdown(socket.SHUT_RDWR)
            self._control.close()
            with contextlib.suppress(FileNotFoundError):
                (self.folder / CONTROL_SOCKET).unlink()
        for process in processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace
        for process in processes:
            try:
                process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
            except KeyboardInterrupt:
                break
        if self.nginx is not None and self.nginx.poll() is None:
            self.nginx.send_signal(signal.SIGQUIT)  # graceful: in-flight requests finish
            try:
                self.nginx.wait(10)
            except subprocess.TimeoutExpired:
                self.nginx.kill()
        for process in processes:
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
        if self.workers is not None:
            self.workers.stop()
        shutil.rmtree(self.sockets, ignore_errors=True)
