"""Trace context across calls: W3C ``traceparent``/``tracestate`` through the OpenTelemetry API.

Every outgoing call carries a valid ``traceparent``, whatever is installed:

- An active span (another instrumentation's) is the parent.
- Otherwise, inside a Flask request, the request's own context is: the
  inbound ``traceparent``/``tracestate`` when it sent them, else one made for
  the request (a random trace id, kept in ``flask.g``), so every call of one
  request shares one trace id and :func:`trace_id` reports it for the logs.
- With a real tracer provider (ours, made on first use when
  ``OTEL_EXPORTER_OTLP_ENDPOINT`` or ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` is
  set: the SDK with a ``BatchSpanProcessor`` and the OTLP/HTTP exporter; or
  one the application set itself) each call is a CLIENT span, exported.
- Without one, the API alone would propagate nothing (its spans are
  invalid), so the call's context is a non-recording span of our own: the
  parent's trace id and flags (or a fresh random trace id outside a request)
  and a new random parent id, injected with ``opentelemetry.propagate``, so
  ``OTEL_PROPAGATORS`` is still honoured.

A request without an inbound ``traceparent`` gets a parent span id that no
exporter ever sees (it stands for the request itself); the trace id is what
ties the services' log lines together.
"""

from __future__ import annotations

import os
import random
import threading
from collections.abc import Iterator, MutableMapping
from contextlib import contextmanager

from flask import current_app, g, has_app_context, has_request_context, request
from opentelemetry import context, propagate, trace

from ..runtime.requestid import trace_id as runtime_trace_id

__all__ = ["client_span", "trace_id"]

_ENDPOINTS = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
_setup_lock = threading.Lock()
_setup_done = False


def _random_id(bits: int) -> int:
    while True:  # all zeros is the invalid id
        found = random.getrandbits(bits)
        if found:
            return found


def _ensure_provider() -> bool:
    """Install the SDK once when an OTLP endpoint is configured; is a real
    (recording) tracer provider set, ours or the application's?"""
    global _setup_done
    if not _setup_done:
        with _setup_lock:
            if not _setup_done:
                _setup_done = True
                if any(os.environ.get(name) for name in _ENDPOINTS) and isinstance(
                    trace.get_tracer_provider(), trace.ProxyTracerProvider
                ):
                    _install_sdk()
    return not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)


def _install_sdk() -> None:
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    attributes: dict[str, str] = {}
    configured = os.environ.get("OTEL_SERVICE_NAME") or "service.name=" in os.environ.get(
        "OTEL_RESOURCE_ATTRIBUTES", ""
    )
    if not configured:  # the SDK lets code override the environment: only when it is silent
        attributes["service.name"] = (
            str(current_app.config.get("LOCKGATE_SERVICE") or current_app.name)
            if has_app_context()
            else "lockgate"
        )
    provider = TracerProvider(resource=Resource.create(attributes))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)


def _request_parent(recording: bool) -> trace.SpanContext:
    """The current request's trace context: inbound, else made once for it."""
    found: trace.SpanContext | None = g.get("lockgate_trace_parent")
    if found is None:
        inbound = trace.get_current_span(propagate.extract(request.headers)).get_span_context()
        if inbound.is_valid:
            found = inbound
        else:
            # The trace id the runtime logs for this request, so both
            # services' lines carry the same one.
            flags = trace.TraceFlags.SAMPLED if recording else trace.TraceFlags.DEFAULT
            found = trace.SpanContext(
                int(runtime_trace_id(), 16),
                _random_id(64),
                is_remote=True,
                trace_flags=trace.TraceFlags(flags),
            )
        g.lockgate_trace_parent = found
    return found


def trace_id() -> str | None:
    """The trace id of the current request (32 lowercase hex digits): the
    active span's, else the inbound ``traceparent``'s, else the one made for
    this request; ``None`` outside a request with no active span."""
    active = trace.get_current_span().get_span_context()
    if active.is_valid:
        return trace.format_trace_id(active.trace_id)
    if not has_request_context():
        return None
    return trace.format_trace_id(_request_parent(_ensure_provider()).trace_id)


@contextmanager
def client_span(
    method: str, target: str, url: str, headers: MutableMapping[str, str]
) -> Iterator[trace.Span]:
    """Make the call's context current and inject it into ``headers``;
    yields the span (non-recording without a tracer provider)."""
    recording = _ensure_provider()
    parent = context.get_current()
    if not trace.get_current_span(parent).get_span_context().is_valid and has_request_context():
        parent = trace.set_span_in_context(trace.NonRecordingSpan(_request_parent(recording)))
    if recording:
        tracer = trace.get_tracer("lockgate.client")
        with tracer.start_as_current_span(
            method,
            context=parent,
            kind=trace.SpanKind.CLIENT,
            attributes={"http.request.method": method, "url.full": url, "peer.service": target},
        ) as span:
            propagate.inject(headers)
            yield span
        return
    above = trace.get_current_span(parent).get_span_context()
    own = trace.SpanContext(
        above.trace_id if above.is_valid else _random_id(128),
        _random_id(64),
        is_remote=False,
        trace_flags=above.trace_flags if above.is_valid else trace.TraceFlags(0),
        trace_state=above.trace_state if above.is_valid else None,
    )
    span = trace.NonRecordingSpan(own)
    token = context.attach(trace.set_span_in_context(span, parent))
    try:
        propagate.inject(headers)
        yield span
    finally:
        context.detach(token)
