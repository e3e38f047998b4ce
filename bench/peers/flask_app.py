"""Plain Flask: the same blueprint at /api/v1 and /api/v2, as Flask users do."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Flask, request

from .store import first_users, limit_of

app = Flask("plain")
users = Blueprint("users", __name__)


@users.get("/users")
def list_users() -> dict[str, Any]:
    return {"users": first_users(limit_of(request.args.get("limit")))}


app.register_blueprint(users, url_prefix="/api/v1", name="users_v1")
app.register_blueprint(users, url_prefix="/api/v2", name="users_v2")
