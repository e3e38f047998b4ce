"""`lockgate rollout`: every replica of users (twice) and orders replaced one
at a time under a steady load through nginx, with no failed request, no
connection reset and no failed try at a replica behind nginx; and the drill
that kills each old replica while nginx still routes to it is caught by the
same checks.

nginx's upstream names slots that `lockgate up` points at one replica or
another, so a rollout never reloads nginx: a reload would close the idle
kept-alive client connections of its old workers, and a request a client
sent on one in that instant would be a reset that no rollout could avoid.
nginx logs each try at a replica (``upstream``, ``upstream_status``), and
every request it read, by the id the client sent: a failure nginx hid by
retrying a GET on another replica still shows there.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fleet.test_up import Up, running_up
from tests.servers import LOCKGATE, ROOT, development_client, token_for, unique_email

pytestmark = pytest.mark.server

#: Requests a second through the gateway, in all, and the clients sending them.
RATE = 200
CLIENTS = 8
#: The services' own per-client limits are not what these tests are about.
UNLIMITED = {"LOCKGATE_RATE_LIMIT": ""}


@dataclass
class Outcome:
    """A request that did not get its expected answer."""

    request_id: str
    method: str
    path: str
    what: str

    def __str__(self) -> str:
        return f"{self.method} {self.path}: {self.what[:160]}"


@dataclass
class Load:
    """What a steady load saw."""

    sent: int = 0
    failed: list[Outcome] = field(default_factory=list)
    resets: list[Outcome] = field(default_factory=list)
    seconds: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)


@contextmanager
def steady_load(up: Up, *, drill: bool = False) -> Iterator[Load]:
    """RATE requests a second from CLIENTS keep-alive clients while the block
    runs, on every pool of users and orders; 4 in 10 are POSTs (new users,
    new orders), which nginx never retries, and a new order is orders asking
    users through the gateway first. ``drill``: 8 in 10 are POSTs, so a
    replica killed at any instant has some in flight."""
    client_id, secret = development_client(up.log.read_text())
    headers = {"Authorization": f"Bearer {token_for(up.base, client_id, secret)}"}
    user = httpx.post(f"{up.base}/api/v2/users", headers=headers, timeout=10, json={
        "first_name": "Roll", "last_name": "Out", "email": unique_email("rollout")})  # fmt: skip
    assert user.status_code == 201, user.text
    user_id = user.json()["id"]
    new_order = {"user_id": user_id, "items": [{"sku": "roll-1", "quantity": 1,
                                                "unit_price_cents": 250}]}  # fmt: skip
    order = httpx.post(f"{up.base}/api/v2/orders", headers=headers, timeout=10, json=new_order)
    assert order.status_code == 201, order.text
    order_id = order.json()["id"]
    new_user, new_order_post = ("POST", "/api/v2/users", 201), ("POST", "/api/v2/orders", 201)
    if drill:
        writes = [new_user, new_order_post] * 4
        plan = [("GET", f"/api/v2/users/{user_id}", 200), *writes[:4],
                ("GET", f"/api/v1/users/{user_id}", 200), *writes[4:]]  # fmt: skip
    else:
        plan = [
            ("GET", f"/api/v2/users/{user_id}", 200),
            new_user,
            ("GET", f"/api/v1/users/{user_id}", 200),  # users' v1 pool
            new_order_post,
            ("GET", f"/api/v2/orders/{order_id}", 200),
            ("GET", f"/api/v2/users/{user_id}", 200),
            new_user,
            ("GET", f"/api/v1/users/{user_id}", 200),
            new_order_post,
            ("GET", "/api/v2/orders?limit=5", 200),
        ]
    load = Load()
    stop = threading.Event()

    def send(offset: int) -> None:
        due = time.monotonic() + offset / RATE
        with httpx.Client(base_url=up.base, headers=headers, timeout=20) as http:
            for n in range(offset, 10**9, CLIENTS):
                if stop.is_set():
                    return
                time.sleep(max(0.0, due - time.monotonic()))
                due += CLIENTS / RATE
                method, path, expected = plan[n % len(plan)]
                body = None
                if path == "/api/v2/users":
                    body = {"first_name": "Load", "last_name": "Ed", "email": unique_email("load")}
                elif path == "/api/v2/orders":
                    body = new_order
                # Its own id, which nginx logs with the request.
                request_id = uuid.uuid4().hex
                try:
                    response = http.request(
                        method, path, json=body, headers={"X-Request-ID": request_id}
                    )
                except httpx.TransportError as error:
                    with load.lock:
                        load.sent += 1
                        load.resets.append(Outcome(request_id, method, path, repr(error)))
                    continue
                with load.lock:
                    load.sent += 1
                    if response.status_code != expected:
                        what = f"{response.status_code} {response.text}"
                        load.failed.append(Outcome(request_id, method, path, what))

    threads = [threading.Thread(target=send, args=(n,)) for n in range(CLIENTS)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    try:
        yield load
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)
        load.seconds = time.monotonic() - started


def rollout(
    up: Up,
    service: str,
    *options: str,
    stopped: dict[str, float],
    started: threading.Event | None = None,
) -> str:
    """``lockgate rollout SERVICE OPTIONS`` against ``up``, which must succeed;
    ``stopped`` gets the time each old replica was told to stop (or killed),
    ``started`` is set at its first line."""
    lines = []
    with subprocess.Popen(
        [str(LOCKGATE), "rollout", service, *options], cwd=ROOT, env=up.env,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    ) as process:  # fmt: skip
        assert process.stdout is not None
        for line in process.stdout:
            lines.append(line)
            if started is not None:
                started.set()
            found = re.match(r"\S+: (\S+) (draining|killed)", line)
            if found:
                stopped[found[1]] = time.time()
        assert process.wait(180) == 0, "".join(lines)
    return "".join(lines)


def replicas(up: Up, service: str) -> dict[int, str]:
    """``up``'s replicas of ``service`` now: each `lockgate serve` process's pid
    and address (its children only: other suites run replicas too)."""
    found = {}
    children = Path(f"/proc/{up.process.pid}/task/{up.process.pid}/children")
    for pid in children.read_text().split():
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
        except OSError:
            continue
        if "serve" in command and command[command.index("--service") + 1] == service:
            found[int(pid)] = command[command.index("--bind") + 1]
    return found


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1][0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


def access_log(up: Up) -> dict[str, dict[str, Any]]:
    """nginx's access log of ``up``, by request id."""
    log = Path(up.env["LOCKGATE_DATA_DIR"]) / "up" / "nginx" / "access.log"
    return {entry["request_id"]: entry for entry in map(json.loads, log.read_text().splitlines())}


def attempts(entry: dict[str, Any]) -> list[tuple[str, bool]]:
    """Each replica (slot) nginx tried for ``entry``, and whether it failed
    there (no answer, or a 5xx)."""
    addresses = re.split(r", | : ", entry["upstream"])
    statuses = re.split(r", | : ", entry["upstream_status"])
    return [(a, s.startswith("5")) for a, s in zip(addresses, statuses, strict=False)]


def failed_tries(log: dict[str, dict[str, Any]]) -> list[str]:
    """Every try nginx made at a replica and got no answer or a 5xx from,
    whether or not it then retried on another."""
    return [
        f"{entry['method']} {entry['uri']} at {address}"
        for entry in log.values()
        for address, failed in attempts(entry)
        if failed
    ]


def summary(load: Load, tries: list[str]) -> str:
    def show(outcomes: list[Any]) -> str:
        return f"{len(outcomes)} {[str(o) for o in outcomes[:3]]}"

    return (
        f"{load.sent} sent in {load.seconds:.0f} s; failed {show(load.failed)}; "
        f"resets {show(load.resets)}; failed tries at replicas {show(tries)}"
    )


def test_rollouts_under_load_lose_no_request_to_a_stopped_replica(tmp_path: Path) -> None:
    stopped: dict[str, float] = {}
    with running_up(tmp_path, "--no-jobs", env=UNLIMITED) as up:
        before = {service: replicas(up, service) for service in ("users", "orders")}
        assert [len(before["users"]), len(before["orders"])] == [3, 2], before
        with steady_load(up) as load:
            time.sleep(2)
            started = threading.Event()
            outputs: list[str] = []
            first = threading.Thread(target=lambda: outputs.append(
                rollout(up, "users", stopped=stopped, started=started)))  # fmt: skip
            first.start()
            assert started.wait(60)
            # One rollout at a time: another is refused while the first runs.
            second = subprocess.run(
                [str(LOCKGATE), "rollout", "orders"], cwd=ROOT, env=up.env,
                capture_output=True, text=True, timeout=60,
            )  # fmt: skip
            first.join(180)
            outputs += [rollout(up, s, stopped=stopped) for s in ("users", "orders")]
            time.sleep(2)
        unknown = subprocess.run(
            [str(LOCKGATE), "rollout", "payments"], cwd=ROOT, env=up.env,
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        after = {service: replicas(up, service) for service in ("users", "orders")}
        tries = failed_tries(access_log(up))
    assert second.returncode == 1, second.stdout + second.stderr
    assert "Error: a rollout of users is in progress" in second.stderr, second.stderr
    assert unknown.returncode == 1, unknown.stdout + unknown.stderr
    assert "services: users, auth, orders" in unknown.stderr, unknown.stderr
    print(summary(load, tries))
    assert "rolled out users: 3 replicas replaced" in outputs[0], outputs[0]
    assert "rolled out users: 3 replicas replaced" in outputs[1], outputs[1]
    assert "rolled out orders: 2 replicas replaced" in outputs[2], outputs[2]
    assert len(stopped) == 8, stopped
    for service, old in before.items():
        # As many replicas as before, every one a new process on a new port,
        # and every old process gone.
        assert len(after[service]) == len(old), (old, after[service])
        assert not set(after[service]) & set(old), (old, after[service])
        assert not set(after[service].values()) & set(old.values()), (old, after[service])
        assert not [pid for pid in old if alive(pid)], old
    # A real load, not a trickle: half the planned rate at least (the pace
    # drops when the other suites share the two cores).
    assert load.sent >= 0.5 * RATE * load.seconds, summary(load, tries)
    # No request failed, none was reset, and nginx had nothing to hide.
    assert load.failed == [], summary(load, tries)
    assert load.resets == [], summary(load, tries)
    assert tries == [], summary(load, tries)


def test_the_drill_without_drain_is_seen_failing(tmp_path: Path) -> None:
    stopped: dict[str, float] = {}
    with running_up(tmp_path, "--no-jobs", env=UNLIMITED) as up:
        with steady_load(up, drill=True) as load:
            time.sleep(2)
            # Each old replica killed while nginx still sends it requests: a
            # POST in flight there is lost (nginx never retries one). Repeated
            # a bounded number of times: whether a kill catches one is chance.
            for service in ["orders", "users"] * 2:
                rollout(up, service, "--no-drain", stopped=stopped)
                if load.failed or load.resets:
                    break
            time.sleep(1)
        tries = failed_tries(access_log(up))
    print(summary(load, tries))
    # A real load, not a trickle: half the planned rate at least (the pace
    # drops when the other suites share the two cores).
    assert load.sent >= 0.5 * RATE * load.seconds, summary(load, tries)
    # What the good rollout's checks would see: tries at the killed replicas,
    # and requests lost with them.
    assert tries, summary(load, tries)
    assert load.failed or load.resets, summary(load, tries)


def test_rollout_without_lockgate_up(tmp_path: Path) -> None:
    env = {**os.environ, "LOCKGATE_DATA_DIR": str(tmp_path / "data")}
    done = subprocess.run(
        [str(LOCKGATE), "rollout", "users"], cwd=ROOT, env=env,
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 1, done.stdout + done.stderr
    path = tmp_path / "data" / "up" / "control.sock"
    assert f"Error: no lockgate up is running here (no control socket at {path})" in done.stderr
    # The socket of a lockgate up that was killed: nothing listens on it.
    path.parent.mkdir(parents=True, exist_ok=True)
    with socket.socket(socket.AF_UNIX) as stale:
        stale.bind(str(path))
    done = subprocess.run(
        [str(LOCKGATE), "rollout", "users"], cwd=ROOT, env=env,
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"nothing answers on the stale socket {path}" in done.stderr, done.stderr
