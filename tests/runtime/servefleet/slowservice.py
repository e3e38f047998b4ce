"""A service with a slow route and a fast one, on the full lockgate runtime."""

from __future__ import annotations

import time
from typing import Any

from flask import Blueprint, Flask, request

from lockgate import Version, Versioning
from lockgate.runtime import Runtime


def create_app() -> Flask:
    app = Flask("slowservice")
    app.config["LOCKGATE_SERVICE"] = "slowservice"
    versioning = Versioning(app, versions=[Version("1")])
    api = Blueprint("api", __name__)

    @api.get("/slow")
    def slow() -> Any:
        seconds = min(float(request.args.get("seconds", "2")), 10.0)
        time.sleep(seconds)
        return {"slept": seconds}

    @api.get("/fast")
    def fast() -> Any:
        return {"ok": True}

    versioning.register_blueprint(api, version="1")
    Runtime(app)
    return app
