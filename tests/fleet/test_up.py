"""`lockgate up`: nginx in front of every replica, each a process of its own;
a replica killed with SIGKILL under steady load costs no request; SIGTERM
stops everything it started."""

from __future__ import annotations

import os
import random
import re
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from tests.servers import LOCKGATE, ROOT, development_client, free_port, token_for, unique_email

pytestmark = pytest.mark.server


def free_range(count: int) -> int:
    """The first of ``count`` consecutive free ports, below the kernel's
    ephemeral range (32768 on): a port there may be taken by any outgoing
    connection between this check and the replica's bind."""
    for _ in range(50):
        start = random.randrange(20000, 32000 - count)
        taken = False
        for port in range(start, start + count):
            with socket.socket() as sock:
                try:
                    sock.bind(("127.0.0.1", port))
                except OSError:
                    taken = True
                    break
        if not taken:
            return start
    raise AssertionError("no free port range")


class Up:
    """A running ``lockgate up``: its process, address, output, first replica port
    and environment (its data directory: where ``lockgate rollout`` finds it)."""

    def __init__(
        self, process: subprocess.Popen[str], base: str, log: Path, first: int,
        env: dict[str, str],
    ) -> None:  # fmt: skip
        self.process, self.base, self.log, self.first = process, base, log, first
        self.env = env

    def replica_pid(self, port: int) -> int:
        """The `lockgate serve` master serving on ``port``."""
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                command = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"serve" in command and f"127.0.0.1:{port}".encode() in command:
                return int(entry.name)
        raise AssertionError(f"no replica on {port}")


@contextmanager
def running_up(tmp: Path, *options: str, env: dict[str, str] | None = None) -> Iterator[Up]:
    """``lockgate up OPTIONS`` in ``tmp`` (and ``env``): its own data directory,
    public port and replica ports, and an edge limit the load tests stay
    under; SIGTERM after."""
    first = free_range(8)
    text = (
        (ROOT / "fleet.toml")
        .read_text()
        .replace('migrations = "services/', f'migrations = "{ROOT}/services/')
    )
    # Its own ports, and an edge limit the load below stays under (the [gateway]
    # table is the file's last).
    text = text.replace("rate = 100", "rate = 5000").replace("burst = 200", "burst = 5000")
    text += f"\nupstream_port = {first}\n"
    manifest = tmp / "fleet.toml"
    manifest.write_text(text)
    port = free_port()
    env = {
        **os.environ,
        "LOCKGATE_DATA_DIR": str(tmp / "data"),
        "LOCKGATE_FLEET": str(manifest),
        **(env or {}),
    }
    log = tmp / "up.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            [str(LOCKGATE), "up", "--port", str(port), *options], cwd=ROOT, env=env,
            stdout=out, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    try:
        while "Press Ctrl-C to stop." not in log.read_text():
            assert process.poll() is None, log.read_text()[-5000:]
            assert time.monotonic() < deadline, log.read_text()[-5000:]
            time.sleep(0.2)
        yield Up(process, base, log, first, env)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:
                process.kill()


@pytest.fixture(scope="module")
def up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Up]:
    with running_up(tmp_path_factory.mktemp("up")) as running:
        yield running


def test_up_serves_the_fleet_through_nginx(up: Up) -> None:
    client_id, secret = development_client(up.log.read_text())
    token = token_for(up.base, client_id, secret)
    with httpx.Client(
        base_url=up.base, timeout=10, headers={"Authorization": f"Bearer {token}"}
    ) as http:
        check_through_nginx(http)
    assert re.search(r"-> \d+ replicas", up.log.read_text())


def check_through_nginx(http: httpx.Client) -> None:
    health = http.get("/healthz")
    assert health.status_code == 200
    assert health.headers["Server"] == "nginx"
    made = http.post("/api/v2/users", json={"first_name": "Up", "last_name": "Stairs",
                                             "email": unique_email("up")})  # fmt: skip
    assert made.status_code == 201, made.text
    legacy = http.get(f"/api/users/{made.json()['id']}", headers={"API-Version": "1"})
    assert legacy.status_code == 200
    assert legacy.headers["API-Version"] == "1"


def test_a_replica_killed_under_load_costs_no_request(up: Up) -> None:
    client_id, secret = development_client(up.log.read_text())
    token = token_for(up.base, client_id, secret)
    headers = {"Authorization": f"Bearer {token}"}
    made = httpx.post(f"{up.base}/api/v2/users", headers=headers, timeout=10, json={
        "first_name": "Fail", "last_name": "Over", "email": unique_email("failover")})  # fmt: skip
    path = f"/api/v2/users/{made.json()['id']}"
    failures: list[str] = []
    answered = [0]
    stop = threading.Event()

    def load() -> None:
        with httpx.Client(base_url=up.base, timeout=10, headers=headers) as http:
            while not stop.is_set():
                try:
                    response = http.get(path)
                except httpx.TransportError as error:
                    failures.append(repr(error))
                    continue
                if response.status_code != 200:
                    failures.append(f"{response.status_code} {response.text[:200]}")
                answered[0] += 1
                time.sleep(0.01)

    threads = [threading.Thread(target=load) for _ in range(4)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(2)
        # The first of users' two shared replicas, gone at once.
        os.killpg(up.replica_pid(up.first), signal.SIGKILL)
        time.sleep(4)
    finally:
        stop.set()
        for thread in threads:
            thread.join(15)
    assert answered[0] > 100, answered
    # Every request the dead replica refused or never answered was retried on
    # the other. The one exception nginx cannot help: an answer the kill cut
    # after its headers had been relayed (gunicorn writes headers and body
    # apart); that request was under way when it happened, not sent after.
    cut = [f for f in failures if f.startswith("RemoteProtocolError")]
    assert len(cut) <= 1, failures[:5]
    assert [f for f in failures if f not in cut] == [], failures[:5]


def test_a_second_up_on_the_same_data_directory_is_refused(up: Up) -> None:
    second = subprocess.run(
        [str(LOCKGATE), "up", "--port", str(free_port())], cwd=ROOT, env=up.env,
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert second.returncode == 1, second.stdout + second.stderr
    assert "another lockgate up runs on" in second.stderr, second.stderr
    # The first one's replicas and slots are untouched: it still serves.
    client_id, secret = development_client(up.log.read_text())
    token = token_for(up.base, client_id, secret)
    for _ in range(6):  # every replica of users' pools, round robin
        answer = httpx.get(
            f"{up.base}/api/v2/users?limit=1", timeout=10,
            headers={"Authorization": f"Bearer {token}"},
        )  # fmt: skip
        assert answer.status_code == 200, answer.text


def test_sigterm_stops_everything_it_started(up: Up) -> None:
    pids = [up.replica_pid(port) for port in range(up.first + 1, up.first + 6)]
    up.process.send_signal(signal.SIGTERM)
    up.process.wait(90)
    assert "stopped" in up.log.read_text()

    def alive(pid: int) -> bool:
        try:
            return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"
        except (FileNotFoundError, IndexError):
            return False

    deadline = time.monotonic() + 30
    while any(alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(alive(pid) for pid in pids)
