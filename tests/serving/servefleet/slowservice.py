"""A service with a slow route and a fast one, on the full lockgate runtime."""

from __future__ import annotations

import os
import time
from typing import Any

import redis
from flask import Blueprint, Flask, request
from prometheus_client import Gauge
from pydantic import BaseModel

from lockgate import Version, Versioning
from lockgate.bodies import read_json
from lockgate.runtime import Runtime


class Note(BaseModel):
    text: str


def create_app() -> Flask:
    # One per worker, summed over the live ones: a dead worker's must leave the sum.
    Gauge("slowservice_workers", "Workers serving", multiprocess_mode="livesum", registry=None).set(
        1
    )
    app = Flask("slowservice")
    app.config["LOCKGATE_SERVICE"] = "slowservice"
    versioning = Versioning(app, versions=[Version("1")])
    api = Blueprint("api", __name__)

    url = os.environ.get("REDIS_URL")
    started = redis.Redis.from_url(url) if url else None

    @api.get("/slow")
    def slow() -> Any:
        seconds = min(float(request.args.get("seconds", "2")), 10.0)
        if started is not None:  # lets a test see every request in flight, across workers
            started.incr("slowservice:started")
        time.sleep(seconds)
        return {"slept": seconds}

    @api.get("/fast")
    def fast() -> Any:
        return {"ok": True}

    @api.post("/echo")
    def echo() -> Any:
        return {"text": read_json(Note).text}

    versioning.register_blueprint(api, version="1")
    Runtime(app)
    return app
