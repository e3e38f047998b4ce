"""What every call carries: the request id, the trace context, the API version, the budget.

The relay route is a view that calls another route through a ServiceClient,
so each test reads what the second hop actually received.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import httpx
import redis
from flask import Flask, request
from opentelemetry import trace

from lockgate.client import ServiceClient, trace_id

from .conftest import ROOT, serve_in_thread

TRACEPARENT = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}")
TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = "00f067aa0ba902b7"


def parts(header: str) -> tuple[str, str]:
    found = TRACEPARENT.fullmatch(header)
    assert found is not None, header
    return found[1], found[2]


def test_the_request_id_and_the_inbound_trace_travel_on(target: str, name: str) -> None:
    response = httpx.get(
        f"{target}/relay/{name}",
        headers={
            "X-Request-ID": "req-abc.1",
            "traceparent": f"00-{TRACE}-{PARENT}-01",
            "tracestate": "vendor=opaque",
        },
        timeout=10,
    )
    body = response.json()
    seen = body["downstream"][0]
    assert seen["X-Request-ID"] == "req-abc.1" == body["request_id"]
    trace_hex, parent = parts(seen["traceparent"])
    assert trace_hex == TRACE == body["trace_id"]
    assert parent != PARENT  # a new parent: the relay's call
    assert seen["traceparent"].endswith("-01")  # the sampled flag kept
    assert seen["tracestate"] == "vendor=opaque"
    assert seen["API-Version"] == "2"
    assert seen["Authorization"] is None  # no credentials given


def test_a_request_without_a_trace_gets_one_shared_by_all_its_calls(target: str, name: str) -> None:
    body = httpx.get(f"{target}/relay/{name}?times=2", timeout=10).json()
    first, second = (parts(seen["traceparent"]) for seen in body["downstream"])
    assert first[0] == second[0] == body["trace_id"]
    assert first[1] != second[1]
    assert first[0] != "0" * 32


def test_outside_a_request_each_call_starts_a_trace(
    target: str, store: redis.Redis, name: str
) -> None:
    client = ServiceClient(name, base_url=target, redis=store)
    first = client.get(f"/echo/{name}").json()
    second = client.get(f"/echo/{name}").json()
    assert parts(first["traceparent"])[0] != parts(second["traceparent"])[0]
    assert first["X-Request-ID"] is None
    assert first["API-Version"] is None  # no version given
    assert trace_id() is None
    # No OTLP endpoint here: no SDK was installed behind anyone's back.
    assert isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)


def test_trace_id_reports_the_inbound_trace_in_a_view() -> None:
    app = Flask("view")
    with app.test_request_context(headers={"traceparent": f"00-{TRACE}-{PARENT}-01"}):
        assert trace_id() == TRACE
    with app.test_request_context():
        made = trace_id()
        assert made is not None and re.fullmatch(r"[0-9a-f]{32}", made)
        assert trace_id() == made  # one per request


EXPORTING = """
import sys
from opentelemetry import trace
from lockgate.client import ServiceClient
client = ServiceClient("exported", base_url=sys.argv[1])
seen = client.get("/echo/exported").json()
trace.get_tracer_provider().force_flush()
print(seen["traceparent"])
"""


def test_spans_are_exported_when_an_otlp_endpoint_is_set(target: str, tmp_path: Path) -> None:
    """A process with ``OTEL_EXPORTER_OTLP_ENDPOINT`` exports a CLIENT span of
    the call (to a collector stand-in here), carrying the propagated trace id."""
    received: list[bytes] = []
    collector = Flask("collector")

    @collector.post("/v1/traces")
    def traces() -> tuple[str, int]:
        received.append(request.get_data())
        return "", 200

    with serve_in_thread(collector) as otlp:
        result = subprocess.run(
            [sys.executable, "-c", EXPORTING, target],
            cwd=ROOT,
            env={**os.environ, "OTEL_EXPORTER_OTLP_ENDPOINT": otlp, "OTEL_SERVICE_NAME": "caller"},
            capture_output=True,
            text=True,
            timeout=30,
        )
    assert result.returncode == 0, result.stderr
    trace_hex, span_hex = parts(result.stdout.strip())
    assert len(received) == 1
    # The protobuf carries the ids as raw bytes, and the service name as text.
    assert bytes.fromhex(trace_hex) in received[0]
    assert bytes.fromhex(span_hex) in received[0]
    assert b"caller" in received[0]
