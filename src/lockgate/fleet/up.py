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
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from ..config import data_dir
from .gateway import local_addresses, pools, render_nginx
from .manifest import Fleet

__all__ = ["Topology"]


def _nginx() -> str:
    import shutil

    found = shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if Path(p).exists()), None
    )
    if found is None:
        from ..errors import ConfigurationError

        raise ConfigurationError("lockgate up needs nginx (make up installs it: apt-get nginx)")
    return found


class Topology:
    """The processes of ``lockgate up``, started and stopped in order."""

    def __init__(self, fleet: Fleet, manifest: Path, *, host: str, port: int) -> None:
        self.fleet = fleet
        self.manifest = manifest
        self.host, self.port = host, port
        self.base = f"http://{host}:{port}"
        self.folder = data_dir() / "up"
        self.replicas: list[tuple[str, subprocess.Popen[bytes]]] = []
        self.nginx: subprocess.Popen[bytes] | None = None
        self.workers: Any = None

    def start_replicas(self, drain_delay: float = 2.0, graceful_timeout: float = 10.0) -> None:
        addresses = local_addresses(self.fleet)
        for pool in pools(self.fleet):
            for address in addresses[pool.name]:
                command = [
                    sys.executable, "-m", "lockgate.fleet", "serve", "--service", pool.service,
                    "--bind", address, "--workers", "1", "--no-jobs",
                    "--drain-delay", str(drain_delay), "--graceful-timeout", str(graceful_timeout),
                    "--manifest", str(self.manifest),
                ]  # fmt: skip
                process = subprocess.Popen(command, start_new_session=True)
                self.replicas.append((f"{pool.name}@{address}", process))
        deadline = time.monotonic() + 90
        for (name, process), address in zip(
            self.replicas, [a for p in pools(self.fleet) for a in addresses[p.name]], strict=True
        ):
            while True:
                if process.poll() is not None:
                    raise RuntimeError(f"replica {name} exited ({process.returncode})")
                with contextlib.suppress(httpx.TransportError):
                    if httpx.get(f"http://{address}/readyz", timeout=1).status_code == 200:
                        break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"replica {name} not ready within 90 s")
                time.sleep(0.1)

    def start_nginx(self) -> None:
        import dataclasses

        run = self.folder / "nginx"
        run.mkdir(parents=True, exist_ok=True)
        gateway = dataclasses.replace(self.fleet.gateway, listen=f"{self.host}:{self.port}")
        fleet = dataclasses.replace(self.fleet, gateway=gateway)
        conf = self.folder / "nginx.conf"
        user = "root" if os.geteuid() == 0 else None
        conf.write_text(
            render_nginx(fleet, run_dir=str(run), user=user, manifest=str(self.manifest))
        )
        binary = _nginx()
        check = subprocess.run(
            [binary, "-t", "-q", "-p", str(self.folder), "-c", str(conf)],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        if check.returncode != 0:
            raise RuntimeError(f"nginx -t refused {conf}: {check.stderr}")
        self.nginx = subprocess.Popen(
            [binary, "-p", str(self.folder), "-c", str(conf), "-g", "daemon off;"],
            start_new_session=True,
        )
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{self.base}/healthz", timeout=1).status_code == 200:
                    return
            if self.nginx.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"nginx did not serve {self.base}: see {run}/error.log")
            time.sleep(0.1)

    def stop(self, grace: float = 20.0) -> None:
        """Replicas drain (nginx still routes in-flight work), then nginx, then workers."""
        for _, process in self.replicas:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace
        for _, process in self.replicas:
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
        for _, process in self.replicas:
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
        if self.workers is not None:
            self.workers.stop()
