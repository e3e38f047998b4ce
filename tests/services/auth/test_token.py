"""The auth service in process: the client credentials grant, its errors, JWKS, metadata,
and its tokens verified by lockgate.auth as every other service verifies them."""

from __future__ import annotations

import base64
import time
from pathlib import Path
from typing import Any

import jwt
import pytest
from flask import Flask
from services.auth.store import ClientStore, metadata

from lockgate.auth import Auth, current_client, require_scope
from services.auth import create_app

ISSUER = "http://127.0.0.1:8080"


@pytest.fixture
def app(tmp_path: Path) -> Flask:
    app = create_app(
        {
            "TESTING": True,
            "DATABASE_URL": f"sqlite:///{tmp_path / 'auth.db'}",
            "LOCKGATE_AUTH_KEYS_DIR": str(tmp_path / "keys"),
        }
    )
    store: ClientStore = app.extensions["auth.clients"]
    metadata.create_all(store.engine)
    return app


@pytest.fixture
def registered(app: Flask) -> tuple[str, str]:
    store: ClientStore = app.extensions["auth.clients"]
    client, secret = store.create("reporting", frozenset({"users:read", "users:write"}))
    return client.id, secret


def basic(client_id: str, secret: str) -> dict[str, str]:
    raw = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    return {"Authorization": f"Basic {raw}"}


def token(app: Flask, data: dict[str, str], headers: dict[str, str] | None = None) -> Any:
    return app.test_client().post("/oauth/token", data=data, headers=headers or {})


def test_client_credentials_by_basic_and_by_form(app: Flask, registered: tuple[str, str]) -> None:
    client_id, secret = registered
    by_basic = token(app, {"grant_type": "client_credentials"}, basic(client_id, secret))
    by_form = token(
        app,
        {"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret},
    )
    for answer in (by_basic, by_form):
        assert answer.status_code == 200
        assert answer.headers["Cache-Control"] == "no-store"
        body = answer.get_json()
        assert body["token_type"] == "Bearer"
        assert body["expires_in"] == 600
        assert body["scope"] == "users:read users:write"
        header = jwt.get_unverified_header(body["access_token"])
        assert header["typ"] == "at+jwt" and header["alg"] == "EdDSA" and header["kid"]
        claims = jwt.decode(body["access_token"], options={"verify_signature": False})
        assert claims["sub"] == claims["client_id"] == client_id
        # For every resource service: the scopes say what it may do there.
        assert claims["iss"] == ISSUER and claims["aud"] == ["orders", "users"]
        assert claims["exp"] - claims["iat"] == 600 and claims["jti"]


def test_a_narrower_scope_and_a_scope_the_client_lacks(
    app: Flask, registered: tuple[str, str]
) -> None:
    client_id, secret = registered
    narrow = token(
        app, {"grant_type": "client_credentials", "scope": "users:read"}, basic(*registered)
    )
    assert narrow.get_json()["scope"] == "users:read"
    wider = token(
        app, {"grant_type": "client_credentials", "scope": "ops:read"}, basic(*registered)
    )
    assert wider.status_code == 400
    assert wider.get_json()["error"] == "invalid_scope"
    del client_id, secret


@pytest.mark.parametrize(
    ("data", "headers", "status", "error"),
    [
        ({"grant_type": "password"}, "good", 400, "unsupported_grant_type"),
        ({}, "good", 400, "invalid_request"),
        ({"grant_type": "client_credentials"}, None, 401, "invalid_client"),
        ({"grant_type": "client_credentials"}, "wrong", 401, "invalid_client"),
        ({"grant_type": "client_credentials"}, "unknown", 401, "invalid_client"),
        ({"grant_type": "client_credentials"}, "garbled", 401, "invalid_client"),
    ],
)
def test_errors_follow_rfc_6749(
    app: Flask,
    registered: tuple[str, str],
    data: dict[str, str],
    headers: str | None,
    status: int,
    error: str,
) -> None:
    client_id, secret = registered
    chosen = {
        None: {},
        "good": basic(client_id, secret),
        "wrong": basic(client_id, secret + "x"),
        "unknown": basic("cl_nobody", secret),
        "garbled": {"Authorization": "Basic %%%"},
    }[headers]
    answer = token(app, data, chosen)
    assert answer.status_code == status
    assert answer.get_json()["error"] == error
    assert answer.headers["Cache-Control"] == "no-store"
    if status == 401:
        assert answer.headers["WWW-Authenticate"].startswith("Basic")


def test_a_revoked_client_gets_no_new_token(app: Flask, registered: tuple[str, str]) -> None:
    store: ClientStore = app.extensions["auth.clients"]
    assert token(app, {"grant_type": "client_credentials"}, basic(*registered)).status_code == 200
    assert store.revoke(registered[0])
    refused = token(app, {"grant_type": "client_credentials"}, basic(*registered))
    assert refused.status_code == 401 and refused.get_json()["error"] == "invalid_client"


def test_secrets_are_stored_only_as_scrypt_hashes(app: Flask, registered: tuple[str, str]) -> None:
    store: ClientStore = app.extensions["auth.clients"]
    with store.engine.connect() as connection:
        stored = connection.exec_driver_sql("select secret_hash from clients").scalar_one()
    assert stored.startswith("scrypt$") and registered[1] not in stored


def test_a_wrong_secret_costs_what_a_right_one_does(
    app: Flask, registered: tuple[str, str]
) -> None:
    """Unknown id, wrong secret, right secret: each does one scrypt (bounded
    ratio). The cases take turns and each keeps its fastest of several
    tries: another process's load only ever adds time, so the minima compare
    the work itself (a skipped scrypt would be a ratio near 0)."""
    store: ClientStore = app.extensions["auth.clients"]
    cases = {"right": registered, "wrong": (registered[0], "wrong"), "unknown": ("cl_nobody", "x")}
    fastest = dict.fromkeys(cases, float("inf"))
    for _ in range(7):
        for name, (client_id, secret) in cases.items():
            started = time.perf_counter()
            store.authenticate(client_id, secret)
            fastest[name] = min(fastest[name], time.perf_counter() - started)
    for name in ("wrong", "unknown"):
        assert 0.5 < fastest[name] / fastest["right"] < 2.0, fastest


def test_jwks_and_metadata(app: Flask) -> None:
    client = app.test_client()
    jwks = client.get("/.well-known/jwks.json")
    assert jwks.status_code == 200 and "max-age" in jwks.headers["Cache-Control"]
    keys = jwks.get_json()["keys"]
    assert keys and all(k["kty"] == "OKP" and k["crv"] == "Ed25519" and "d" not in k for k in keys)
    meta = client.get("/.well-known/oauth-authorization-server").get_json()
    assert meta["issuer"] == ISSUER
    assert meta["token_endpoint"] == f"{ISSUER}/oauth/token"
    assert meta["jwks_uri"] == f"{ISSUER}/.well-known/jwks.json"
    assert meta["grant_types_supported"] == ["client_credentials"]


def test_a_token_is_accepted_by_a_resource_service(app: Flask, registered: tuple[str, str]) -> None:
    issued = token(app, {"grant_type": "client_credentials"}, basic(*registered)).get_json()
    keys = app.test_client().get("/.well-known/jwks.json").get_json()
    resource = Flask("users")
    Auth(resource, issuer=ISSUER, audience="users", jwks=lambda: keys)

    @resource.get("/users")
    @require_scope("users:read")
    def users() -> Any:
        client = current_client()
        assert client is not None
        return {"client": client.client_id}

    answer = resource.test_client().get(
        "/users", headers={"Authorization": f"Bearer {issued['access_token']}"}
    )
    assert answer.status_code == 200 and answer.get_json() == {"client": registered[0]}


def test_only_failed_tries_spend_the_budgets(app: Flask, registered: tuple[str, str]) -> None:
    app.config["LOCKGATE_AUTH_TOKEN_RATE_LIMIT_IP"] = "3/minute"
    client_id, secret = registered
    grant = {"grant_type": "client_credentials"}
    # A client that knows its secret is never held back by the address's budget.
    assert [token(app, grant, basic(client_id, secret)).status_code for _ in range(6)] == [200] * 6
    wrong = [token(app, grant, basic(client_id, f"guess-{n}")) for n in range(4)]
    assert [r.status_code for r in wrong] == [401, 401, 401, 429]
    assert wrong[3].mimetype == "application/problem+json"
    assert wrong[3].headers["Cache-Control"] == "no-store" and wrong[3].headers["Retry-After"]
    # Spent: not even the right secret is checked now, from this address.
    assert token(app, grant, basic(client_id, secret)).status_code == 429


def test_a_parameter_sent_twice_is_invalid_request(app: Flask, registered: tuple[str, str]) -> None:
    client_id, secret = registered
    answer = app.test_client().post(
        "/oauth/token",
        data="grant_type=client_credentials&grant_type=client_credentials",
        content_type="application/x-www-form-urlencoded",
        headers=basic(client_id, secret),
    )
    assert answer.status_code == 400
    assert answer.get_json()["error"] == "invalid_request"
