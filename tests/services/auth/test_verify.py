"""``GET /oauth/verify``: the gateway's question, "is this bearer token good?",
answered 204 with who and what, or 401 problem+json; cacheable per token for
no longer than the token lives."""

from __future__ import annotations

import base64
import time
from pathlib import Path

import jwt
import pytest
from flask import Flask
from services.auth.store import ClientStore, metadata

from services.auth import create_app


@pytest.fixture
def app(tmp_path: Path) -> Flask:
    app = create_app(
        {
            "TESTING": True,
            "DATABASE_URL": f"sqlite:///{tmp_path / 'auth.db'}",
            "LOCKGATE_AUTH_KEYS_DIR": str(tmp_path / "keys"),
            "LOCKGATE_AUTH_TOKEN_TTL": 300,
        }
    )
    metadata.create_all(app.extensions["auth.clients"].engine)
    return app


def issue(app: Flask, scopes: frozenset[str], scope: str | None = None) -> str:
    store: ClientStore = app.extensions["auth.clients"]
    client, secret = store.create("edge-test", scopes)
    raw = base64.b64encode(f"{client.id}:{secret}".encode()).decode()
    form = {"grant_type": "client_credentials", **({"scope": scope} if scope else {})}
    answer = app.test_client().post(
        "/oauth/token", data=form, headers={"Authorization": f"Basic {raw}"}
    )
    assert answer.status_code == 200, answer.json
    token: str = answer.json["access_token"]  # type: ignore[index]
    return token


def test_a_valid_token_is_204_with_its_client_and_scopes(app: Flask) -> None:
    token = issue(app, frozenset({"users:read", "orders:read"}))
    answer = app.test_client().get("/oauth/verify", headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == 204
    claims = jwt.decode(token, options={"verify_signature": False})
    assert answer.headers["X-Client-Id"] == claims["client_id"]
    assert answer.headers["X-Scopes"] == "orders:read users:read"
    remaining = int(answer.headers["X-Accel-Expires"])
    assert 0 < remaining <= claims["exp"] - time.time() + 1
    assert remaining <= 300
    assert answer.data == b""


@pytest.mark.parametrize(
    "header",
    [None, "Bearer", "Basic dXNlcjpwYXNz", "Bearer not-a-jwt", "Bearer a.b.c"],
    ids=["none", "empty", "basic", "garbage", "three-parts"],
)
def test_anything_but_a_valid_token_is_a_401_problem_never_cached(
    app: Flask, header: str | None
) -> None:
    answer = app.test_client().get(
        "/oauth/verify", headers={"Authorization": header} if header else {}
    )
    assert answer.status_code == 401
    assert answer.content_type == "application/problem+json"
    assert answer.headers["WWW-Authenticate"].startswith('Bearer error="invalid_token"')
    assert answer.headers["Cache-Control"] == "no-store"
    assert "X-Accel-Expires" not in answer.headers


def test_a_forged_or_expired_token_is_refused(app: Flask, tmp_path: Path) -> None:
    token = issue(app, frozenset({"users:read"}))
    head, body, signature = token.split(".")
    forged = f"{head}.{body}.{signature[::-1]}"
    client = app.test_client()
    assert (
        client.get("/oauth/verify", headers={"Authorization": f"Bearer {forged}"}).status_code
        == 401
    )
    other = create_app(
        {
            "TESTING": True,
            "DATABASE_URL": f"sqlite:///{tmp_path / 'other.db'}",
            "LOCKGATE_AUTH_KEYS_DIR": str(tmp_path / "other-keys"),
        }
    )
    metadata.create_all(other.extensions["auth.clients"].engine)
    stranger = issue(other, frozenset({"users:read"}))  # another issuer's keys
    refused = client.get("/oauth/verify", headers={"Authorization": f"Bearer {stranger}"})
    assert refused.status_code == 401
