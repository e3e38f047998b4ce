"""One calling process of the cross-process breaker test.

``python -m tests.client.caller BASE REDIS_URL TARGET RESET``: builds its
client, prints ``ready``, waits for a line ``go <until>`` on stdin, then calls
``/switch/<target>`` every 20 ms until the wall clock passes ``until``
(finishing the call it is in) and prints what it got as one JSON line:
counts of answers and refusals, and the median time a refusal took.
"""

from __future__ import annotations

import json
import statistics
import sys
import time

import redis

from lockgate.client import BreakerSettings, ServiceClient, UpstreamUnavailable


def main() -> None:
    base, redis_url, target, reset = sys.argv[1:5]
    store = redis.Redis.from_url(redis_url)
    client = ServiceClient(
        target, base_url=base, redis=store, breaker=BreakerSettings(failures=2, reset=float(reset))
    )
    client.breaker_state()  # connected to Redis before the clock starts
    print("ready", flush=True)
    command = sys.stdin.readline().split()
    assert command[0] == "go", command
    until = float(command[1])
    found: dict[str, int] = {"ok": 0, "unavailable": 0, "other": 0}
    refusals: list[float] = []
    while time.time() < until:
        started = time.perf_counter()
        try:
            response = client.post(f"/switch/{target}")
        except UpstreamUnavailable:
            found["unavailable"] += 1
            refusals.append(time.perf_counter() - started)
        else:
            found["ok" if response.status_code == 200 else "other"] += 1
        time.sleep(0.02)
    store.close()
    median = statistics.median(refusals) if refusals else None
    print(json.dumps({**found, "median_refusal": median}), flush=True)


if __name__ == "__main__":
    main()
