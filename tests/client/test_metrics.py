"""The client's metrics in prometheus_client's registry, with bounded labels."""

from __future__ import annotations

import pytest
import redis
from prometheus_client import REGISTRY, generate_latest

from lockgate.client import BreakerSettings, ServiceClient, UpstreamUnavailable


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_attempts_outcomes_durations_and_the_breaker_state(
    target: str, store: redis.Redis, name: str
) -> None:
    client = ServiceClient(
        name, base_url=target, redis=store, breaker=BreakerSettings(failures=2, reset=30)
    )
    assert client.get(f"/flaky/{name}?fail=1").status_code == 200  # one retry
    assert client.get(f"/flaky/{name}-404?fail=1&status=404").status_code == 404
    assert sample("circuit_breaker_state", target=name) == 0
    for _ in range(2):
        client.post(f"/flaky/{name}-down?fail=10&status=503")
    with pytest.raises(UpstreamUnavailable):
        client.post(f"/flaky/{name}-down")

    requests = "upstream_requests_total"
    assert sample(requests, target=name, method="GET", outcome="retried") == 1
    assert sample(requests, target=name, method="GET", outcome="2xx") == 1
    assert sample(requests, target=name, method="GET", outcome="4xx") == 1
    assert sample(requests, target=name, method="POST", outcome="5xx") == 2
    assert sample(requests, target=name, method="POST", outcome="breaker_open") == 1
    assert sample("upstream_request_duration_seconds_count", target=name) == 5
    assert sample("circuit_breaker_state", target=name) == 2
    text = generate_latest().decode()
    assert f'upstream_requests_total{{method="GET",outcome="2xx",target="{name}"}} 1.0' in text
    assert "# TYPE upstream_request_duration_seconds histogram" in text
    assert f'circuit_breaker_state{{target="{name}"}} 2.0' in text


def test_an_invented_method_is_counted_as_other(target: str, store: redis.Redis, name: str) -> None:
    client = ServiceClient(name, base_url=target, redis=store)
    client.request("BREW", f"/echo/{name}")
    assert sample("upstream_requests_total", target=name, method="other", outcome="4xx") == 1
