"""A target service for the client's tests, served for real (werkzeug or gunicorn).

Every route counts its calls in Redis under a name from the path, so counts
are right across worker processes; the tests read them with :func:`calls`.

- ``/flaky/<name>?fail=N&status=503&retry_after=S``: the first N calls answer
  ``status`` (with ``Retry-After: S`` when given), later ones 200.
- ``/slow/<name>?seconds=S``: sleeps, then 200.
- ``/switch/<name>``: what ``mode:<name>`` in Redis says: ``down`` (503),
  ``slow:S`` (sleep, then 200), else 200.
- ``/echo/<name>``: the headers a client propagates, as JSON.
- ``/oauth/token``: the client credentials grant for ``orders``/``s3cret``,
  counting requests and tokens issued (``expires_in`` from ``TOKEN_TTL``, 2 s).
- ``/protected/<name>``: 401 unless the bearer token is one issued and not
  revoked (and ``refuse:<name>`` is not set in Redis).
- ``/relay/<name>?to=echo|slow&seconds=S&pause=P``: a view that is itself a
  client: it calls this server's ``/<to>/<name>`` through a
  :class:`~lockgate.client.ServiceClient` (config keys from the app) and
  answers what it received and what the callee saw.
"""

from __future__ import annotations

import base64
import os
import time
from typing import Any

import redis
from flask import Flask, current_app, jsonify, request
from werkzeug.exceptions import HTTPException

from lockgate.client import ServiceClient, remaining_budget, trace_id
from lockgate.client.deadline import ARRIVED_KEY
from lockgate.problems import handle_http_exception
from lockgate.runtime import request_id

#: The headers :func:`echo` reports.
ECHOED = (
    "X-Request-ID",
    "traceparent",
    "tracestate",
    "API-Version",
    "Authorization",
    "X-Request-Deadline-Ms",
    "Idempotency-Key",
)
CLIENT_ID, CLIENT_SECRET = "orders", "s3cret"


def calls(client: redis.Redis, name: str) -> int:
    """How many calls ``name``'s routes have had."""
    return int(client.get(f"calls:{name}") or 0)


def call_times(client: redis.Redis, name: str) -> list[float]:
    """When they arrived (``time.time()``), in order."""
    return [float(t) for t in client.lrange(f"times:{name}", 0, -1)]


def create_app(redis_url: str | None = None, **config: Any) -> Flask:
    """The target; ``redis_url`` defaults to ``$TARGET_REDIS_URL`` (for gunicorn)."""
    app = Flask("target")
    app.config.update(
        REDIS_URL=redis_url or os.environ["TARGET_REDIS_URL"],
        TOKEN_TTL=int(os.environ.get("TARGET_TOKEN_TTL", "2")),
        **config,
    )
    store = redis.Redis.from_url(app.config["REDIS_URL"], socket_timeout=5)
    app.register_error_handler(HTTPException, handle_http_exception)
    inner = app.wsgi_app

    def arrive(environ: dict[str, Any], start_response: Any) -> Any:
        # What a server or the runtime does: note when the request arrived,
        # so its budget is measured from then, not from the view's first call.
        environ.setdefault(ARRIVED_KEY, time.monotonic())
        return inner(environ, start_response)

    app.wsgi_app = arrive  # type: ignore[method-assign]

    def count(name: str) -> int:
        pipe = store.pipeline()
        pipe.incr(f"calls:{name}")
        pipe.rpush(f"times:{name}", repr(time.time()))
        return int(pipe.execute()[0])

    @app.get("/healthz")
    def healthz() -> Any:
        return {"status": "ok"}

    @app.route("/flaky/<name>", methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
    def flaky(name: str) -> Any:
        seen = count(name)
        if seen <= int(request.args.get("fail", "1")):
            headers = {}
            if "retry_after" in request.args:
                headers["Retry-After"] = request.args["retry_after"]
            status = int(request.args.get("status", "503"))
            return jsonify(failed=seen), status, headers
        return jsonify(count=seen, key=request.headers.get("Idempotency-Key"))

    @app.route("/slow/<name>", methods=["GET", "POST"])
    def slow(name: str) -> Any:
        count(name)
        time.sleep(float(request.args.get("seconds", "1")))
        return {"slept": True}

    @app.route("/switch/<name>", methods=["GET", "POST"])
    def switch(name: str) -> Any:
        seen = count(name)
        mode = (store.get(f"mode:{name}") or b"").decode()
        if mode == "down":
            time.sleep(float(request.args.get("fail_after", "0")))
            return jsonify(down=True), 503
        if mode.startswith("slow:"):
            time.sleep(float(mode.removeprefix("slow:")))
        return {"count": seen}

    @app.route("/echo/<name>", methods=["GET", "POST"])
    def echo(name: str) -> Any:
        count(name)
        return {header: request.headers.get(header) for header in ECHOED}

    @app.post("/oauth/token")
    def token() -> Any:
        store.incr("token_requests")  # asked, whether or not it issues one
        basic = request.headers.get("Authorization", "")
        expected = base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
        if basic != f"Basic {expected}":
            return jsonify(error="invalid_client"), 401
        if request.form.get("grant_type") != "client_credentials":
            return jsonify(error="unsupported_grant_type"), 400
        issued = int(store.incr("tokens"))
        value = f"tok-{issued}"
        ttl = int(current_app.config["TOKEN_TTL"])
        store.set(f"token:{value}", request.form.get("scope", ""), ex=ttl)
        return jsonify(access_token=value, token_type="Bearer", expires_in=ttl)

    @app.post("/oauth/revoke")
    def revoke() -> Any:
        store.delete(f"token:{request.form['token']}")
        return "", 200

    @app.route("/protected/<name>", methods=["GET", "POST"])
    def protected(name: str) -> Any:
        count(name)
        value = request.headers.get("Authorization", "").removeprefix("Bearer ")
        scope = store.get(f"token:{value}")
        if scope is None or store.exists(f"refuse:{name}"):
            return jsonify(error="invalid_token"), 401, {"WWW-Authenticate": "Bearer"}
        store.rpush(f"used:{name}", value)
        return {"token": value, "scope": scope.decode()}

    @app.route("/relay/<name>", methods=["GET", "POST"])
    def relay(name: str) -> Any:
        time.sleep(float(request.args.get("pause", "0")))
        received = {header: request.headers.get(header) for header in ECHOED}
        budget = remaining_budget()
        callee = relayed(request.host_url.rstrip("/"))
        to = request.args.get("to", "echo")
        seconds = request.args.get("seconds", "0")
        answers = [
            callee.get(f"/{to}/{name}", params={"seconds": seconds}).json()
            for _ in range(int(request.args.get("times", "1")))
        ]
        return {
            "received": received,
            "budget": budget,
            "trace_id": trace_id(),
            "request_id": request_id(),
            "downstream": answers,
        }

    return app


_relayed: dict[str, ServiceClient] = {}


def relayed(base: str) -> ServiceClient:
    """The relay's client of this very server (made once per address)."""
    if base not in _relayed:
        _relayed[base] = ServiceClient("self", version="2", base_url=base)
    return _relayed[base]
