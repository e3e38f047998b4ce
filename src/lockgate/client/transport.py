"""The transport under every call: deadline, breaker, retries, then the socket.

An ``httpx`` transport (the shape of ``httpx/_transports/base.py``) wrapped
around ``httpx.HTTPTransport``, so a view calls ``users.get(...)`` and never
sees a retry loop. Per attempt: what is left of the deadline cuts the
connect and read timeouts and goes out as ``X-Request-Deadline-Ms``; the
breaker admits or refuses (one Redis round trip) and learns the outcome (one
more); the body is read inside the attempt, so a slow body is the attempt's
timeout, not the caller's surprise.

Retries are tenacity's (``wait_random_exponential``: exponential backoff with
full jitter), at most :data:`MAX_ATTEMPTS` attempts in all, and only:

- on a connect error or connect timeout; on a connection that broke before
  the answer came (reset, or closed with no answer: a kept-alive one the
  server closed as the request went out, RFC 9112 9.3.1); or on a 429,
  502, 503 or 504 answer;
- for an idempotent method, or a request carrying an ``Idempotency-Key``;
- when the wait (``Retry-After`` on a 429 or 503, plus the jitter) leaves
  time before the deadline, the retry budget has one to give, and the
  attempt was not the half-open trial.

A connect error that is the last word ends as 503 ``UpstreamUnavailable``, a
timeout as 504 ``UpstreamTimeout``; an answer, whatever its status, is
returned. One pooled ``httpx.Client`` per process and base URL keeps its
connections alive; a forked worker makes its own. It sends no cookies
(none are kept: the client serves every user's requests) and reads no proxy
settings from the environment (calls inside the fleet go direct).
"""

from __future__ import annotations

import email.utils
import http.cookiejar
import logging
import os
import threading
import time
from datetime import UTC, datetime
from typing import Any

import httpx
from tenacity import RetryCallState, Retrying, wait_random_exponential

from . import metrics
from .breaker import OPEN, STATE_NAMES
from .call import CALL_KEY, Call
from .deadline import HEADER as DEADLINE_HEADER
from .failures import UpstreamTimeout, UpstreamUnavailable

__all__ = [
    "FAILURE_STATUSES",
    "IDEMPOTENT",
    "MAX_ATTEMPTS",
    "RETRY_ERRORS",
    "RETRY_STATUSES",
    "ResilientTransport",
    "pooled",
]

#: Attempts in all: the first and at most two retries.
MAX_ATTEMPTS = 3
#: Transport errors worth another attempt: the request never reached the
#: target, or the connection broke before any answer (a timeout is not one:
#: the target may still be working on it).
RETRY_ERRORS = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.ReadError,
    httpx.WriteError,
    httpx.RemoteProtocolError,
)
#: Answers worth another attempt.
RETRY_STATUSES = frozenset((429, 502, 503, 504))
#: Answers the breaker counts as failures (any other, 4xx included, is a success).
FAILURE_STATUSES = frozenset((500, 502, 503, 504))
#: Methods that may be sent twice (RFC 9110 §9.2.2); POST and PATCH need an Idempotency-Key.
IDEMPOTENT = frozenset(("GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"))
#: Full jitter: the n-th retry waits uniformly in [0, BACKOFF * 2**(n-1)], at most BACKOFF_MAX.
BACKOFF = 0.2
BACKOFF_MAX = 2.0
logger = logging.getLogger("lockgate.client")


def retry_after(response: httpx.Response) -> float | None:
    """Seconds a 429 or 503 asks us to wait (delta-seconds or an HTTP date)."""
    if response.status_code not in (429, 503):
        return None
    raw = response.headers.get("Retry-After", "").strip()
    if raw.isascii() and raw.isdigit():
        return float(int(raw[:6]))
    try:
        when = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _outcome(error: Exception) -> str:
    if isinstance(error, httpx.TimeoutException | UpstreamTimeout):
        return "timeout"
    if isinstance(error, httpx.ConnectError):
        return "connect_error"
    return "error"


class ResilientTransport(httpx.BaseTransport):
    """Deadline, breaker and retries around ``inner``, for requests that carry a
    :class:`~.call.Call`; any other request passes straight through."""

    def __init__(self, inner: httpx.BaseTransport) -> None:
        self.inner = inner

    def close(self) -> None:
        self.inner.close()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        call = request.extensions.get(CALL_KEY)
        if not isinstance(call, Call):
            return self.inner.handle_request(request)
        if call.retryable:
            request.read()  # a streamed body could not be sent twice
        retrying = Retrying(
            retry=lambda state: self._should_retry(call, state),
            wait=self._waiter(),
            stop=lambda state: self._should_stop(call, state),
            before_sleep=lambda state: self._retrying(call, state),
            retry_error_callback=lambda state: state.outcome.result(),  # type: ignore[union-attr]
            sleep=time.sleep,
        )
        try:
            response: httpx.Response = retrying(self._attempt, request, call)
        except httpx.TimeoutException as error:
            raise UpstreamTimeout(
                call.target, f"{call.target} did not answer in time ({type(error).__name__})"
            ) from error
        except httpx.TransportError as error:
            state = call.breaker.state(call.target)
            wait = call.settings.reset if state == OPEN else 1.0
            raise UpstreamUnavailable(
                call.target,
                f"{call.target} could not be reached ({type(error).__name__})",
                retry_after=wait,
            ) from error
        finally:
            metrics.count(call.target, call.method, call.outcome or "error")
        return response

    def _attempt(self, request: httpx.Request, call: Call) -> httpx.Response:
        call.attempts += 1
        call.trial = None
        left = call.remaining()
        if left <= 0:
            call.outcome = "deadline"
            raise UpstreamTimeout(call.target, f"no time was left to call {call.target}")
        admission = call.breaker.admit(
            call.target, call.settings, first=call.attempts == 1, lease=left + 1.0
        )
        metrics.show_state(call.target, admission.state)
        if not admission.allowed:
            call.outcome = "breaker_open"
            raise UpstreamUnavailable(
                call.target,
                f"{call.target} is failing; its circuit breaker is "
                f"{STATE_NAMES[admission.state].replace('_', '-')} and calls fail fast",
                retry_after=admission.wait,
            )
        call.trial = admission.trial
        timeouts = call.timeouts
        request.extensions["timeout"] = {
            "connect": min(timeouts.connect, left),
            "read": min(timeouts.read, left),
            "write": min(timeouts.read, left),
            "pool": min(timeouts.connect, left),
        }
        request.headers[DEADLINE_HEADER] = str(int(left * 1000))
        try:
            response = self.inner.handle_request(request)
            try:
                body = self._read(response, call)
            finally:
                response.close()
        except (httpx.TransportError, UpstreamTimeout) as error:
            call.outcome = _outcome(error)
            timed_out = isinstance(error, httpx.TimeoutException | UpstreamTimeout)
            if not (timed_out and call.cut_by_caller(left)):
                self._record(call, failed=True)
            raise
        call.outcome = f"{response.status_code // 100}xx"
        self._record(call, failed=response.status_code in FAILURE_STATUSES)
        extensions = {k: v for k, v in response.extensions.items() if k != "network_stream"}
        return httpx.Response(
            response.status_code,
            headers=response.headers,
            stream=httpx.ByteStream(body),
            extensions=extensions,
        )

    @staticmethod
    def _read(response: httpx.Response, call: Call) -> bytes:
        """The raw body, or :class:`UpstreamTimeout` once the deadline passes
        between chunks (each read is bounded by the read timeout already)."""
        stream = response.stream
        assert isinstance(stream, httpx.SyncByteStream)
        chunks = []
        for chunk in stream:
            chunks.append(chunk)
            if time.monotonic() > call.deadline:
                raise UpstreamTimeout(call.target, f"{call.target} sent its answer too slowly")
        return b"".join(chunks)

    @staticmethod
    def _record(call: Call, *, failed: bool) -> None:
        state = call.breaker.record(call.target, call.settings, failed=failed, trial=call.trial)
        metrics.show_state(call.target, state)

    @staticmethod
    def _should_retry(call: Call, state: RetryCallState) -> bool:
        if not call.retryable or call.trial is not None:
            return False
        outcome = state.outcome
        if outcome is None:
            return False
        if outcome.failed:
            return isinstance(outcome.exception(), RETRY_ERRORS)
        response: httpx.Response = outcome.result()
        return response.status_code in RETRY_STATUSES

    @staticmethod
    def _waiter() -> Any:
        jitter = wait_random_exponential(multiplier=BACKOFF, max=BACKOFF_MAX)

        def wait(state: RetryCallState) -> float:
            pause = jitter(state)
            outcome = state.outcome
            if outcome is not None and not outcome.failed:
                asked = retry_after(outcome.result())
                if asked is not None:
                    pause += asked
            return pause

        return wait

    @staticmethod
    def _should_stop(call: Call, state: RetryCallState) -> bool:
        if state.attempt_number >= MAX_ATTEMPTS:
            return True
        if state.upcoming_sleep >= call.remaining():
            return True  # waiting would spend the deadline: answer with what we have
        if not call.breaker.withdraw(call.target):
            logger.info("no retry of %s %s: its retry budget is spent", call.method, call.target)
            return True
        return False

    @staticmethod
    def _retrying(call: Call, state: RetryCallState) -> None:
        metrics.count(call.target, call.method, "retried")
        logger.debug(
            "retrying %s %s after %s (attempt %d) in %.3f s",
            call.method,
            call.target,
            call.outcome,
            state.attempt_number,
            state.upcoming_sleep,
        )


class _NoCookies(http.cookiejar.DefaultCookiePolicy):
    """Keep no cookie: one pooled client serves every user's requests."""

    def set_ok(self, cookie: http.cookiejar.Cookie, request: Any) -> bool:
        return False


_pools: dict[str, httpx.Client] = {}
_pools_pid = os.getpid()
_pools_lock = threading.Lock()


def pooled(base_url: str) -> httpx.Client:
    """This process's one client for ``base_url``, made on first use (and again
    in a forked child, whose parent's connections it must not share)."""
    global _pools_pid, _pools_lock
    if _pools_pid != os.getpid():
        # The parent's sockets and lock are not ours: start afresh, without
        # closing them (that would be the parent's business).
        _pools.clear()
        _pools_pid, _pools_lock = os.getpid(), threading.Lock()
    found = _pools.get(base_url)
    if found is None:
        with _pools_lock:
            found = _pools.get(base_url)
            if found is None:
                found = _pools[base_url] = httpx.Client(
                    base_url=base_url,
                    transport=ResilientTransport(
                        httpx.HTTPTransport(
                            limits=httpx.Limits(
                                max_connections=100,
                                max_keepalive_connections=20,
                                keepalive_expiry=30,
                            ),
                            trust_env=False,
                        )
                    ),
                    cookies=http.cookiejar.CookieJar(policy=_NoCookies()),
                    trust_env=False,
                    follow_redirects=False,
                    headers={"User-Agent": "lockgate-client"},
                )
    return found
