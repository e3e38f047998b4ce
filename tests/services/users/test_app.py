"""The users service in process: ``create_app(test_config)`` and its test client.

The fast layer: no server, one SQLite file per test migrated by the service's
own Alembic revisions. The end-to-end suites (``test_users.py``,
``test_hostile.py``, ``test_schemathesis.py``) run the same service under
``lockgate run`` on SQLite and PostgreSQL.
"""

from __future__ import annotations

import inspect
import random
import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from lockgate.auth import KeyStore
from lockgate.fleet.database import upgrade
from services.users import create_app, v1, v2, web
from tests.tokens import ISSUER, mint

MIGRATIONS = Path(__file__).resolve().parents[3] / "services" / "users" / "migrations"


#: What a client that reads and writes users holds.
READ_WRITE = "users:read users:write"


@pytest.fixture
def keys(tmp_path: Path) -> KeyStore:
    return KeyStore(tmp_path / "keys", retain=timedelta(minutes=11))


@pytest.fixture
def make_app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, keys: KeyStore) -> Any:
    monkeypatch.setenv("LOCKGATE_DATA_DIR", str(tmp_path))
    url = f"sqlite:///{tmp_path / 'users.db'}"
    upgrade(MIGRATIONS, url)
    keys.current()  # writes the public jwks.json the service reads

    def make(**config: Any) -> Flask:
        return create_app(
            {
                "DATABASE_URL": url,
                "TESTING": True,
                "LOCKGATE_AUTH_ISSUER": ISSUER,
                "LOCKGATE_AUTH_JWKS_FILE": str(keys.directory / "jwks.json"),
                **config,
            }
        )

    return make


def authorized(app: Flask, keys: KeyStore, scope: str = READ_WRITE) -> FlaskClient:
    """A test client whose every request carries a token for ``scope``."""
    client = app.test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {mint(keys, scope=scope)}"
    return client


@pytest.fixture
def client(make_app: Any, keys: KeyStore) -> FlaskClient:
    return authorized(make_app(), keys)


def test_config_order_defaults_then_environment_then_test_config(
    make_app: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert make_app().config["LOCKGATE_TITLE"] == "lockgate users"
    monkeypatch.setenv("LOCKGATE_TITLE", "from the environment")
    assert make_app().config["LOCKGATE_TITLE"] == "from the environment"
    assert make_app(LOCKGATE_TITLE="from test_config").config["LOCKGATE_TITLE"] == (
        "from test_config"
    )


def test_a_user_written_by_v1_reads_back_through_v2(client: FlaskClient) -> None:
    created = client.post("/api/v1/users", json={"name": "Ada King Lovelace", "email": "a@b.co"})
    assert created.status_code == 201, created.get_data(as_text=True)
    assert created.headers["Location"] == f"/api/v1/users/{created.json['id']}"
    v2_user = client.get(f"/api/v2/users/{created.json['id']}").json
    assert v2_user is not None
    assert (v2_user["first_name"], v2_user["last_name"]) == ("Ada", "King Lovelace")
    patched = client.patch(f"/api/v2/users/{v2_user['id']}", json={"last_name": "Byron"})
    assert patched.json["last_name"] == "Byron"
    assert client.get(f"/api/v1/users/{v2_user['id']}").json["name"] == "Ada Byron"
    assert client.delete(f"/api/v1/users/{v2_user['id']}").status_code == 204
    assert client.get(f"/api/v2/users/{v2_user['id']}").status_code == 404


def test_versions_share_one_implementation_of_every_view(make_app: Any) -> None:
    app = make_app()
    for view in ("list_users", "create_user", "get_user", "update_user", "delete_user"):
        one = inspect.unwrap(app.view_functions[f"users_v1.{view}"])
        two = inspect.unwrap(app.view_functions[f"users_v2.{view}"])
        assert one.__code__ is two.__code__, view
    # A version folder defines a representation and nothing that routes.
    for version in (v1, v2):
        assert isinstance(version.representation, web.Representation)
        assert not [name for name, value in vars(version).items() if hasattr(value, "view_class")]


def test_client_errors_are_problems(client: FlaskClient) -> None:
    cases = [
        (client.get("/api/v1/users?offset=9223372036854775808"), 400, "InvalidQuery"),
        (client.get("/api/v2/users?cursor=&email="), 400, "InvalidQuery"),
        (client.get("/api/users", headers={"API-Version": "9" * 4301}), 400, "InvalidApiVersion"),
        (client.patch("/api/v1/users/1", json={"email": None}), 422, "ValidationFailed"),
        (client.post("/api/v1/users", json={"name": "\r" + "A" * 201, "email": ""}), 422, None),
    ]
    for response, status, code in cases:
        assert response.status_code == status, response.get_data(as_text=True)
        assert response.mimetype == "application/problem+json"
        assert response.headers["X-Request-ID"]
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        if code:
            assert response.json["code"] == code
    assert client.get("/api/v1/users?offset=9223372036854775807").json == []


def test_only_trusted_hosts_are_served(make_app: Any, keys: KeyStore) -> None:
    client = authorized(make_app(LOCKGATE_TRUSTED_HOSTS=["users.example"]), keys)
    assert client.get("http://users.example/api/v2/users").status_code == 200
    refused = client.get("http://evil.example/api/v2/users")
    assert refused.status_code == 400
    assert refused.mimetype == "application/problem+json"


def test_request_schemas_are_never_nullable_and_forbid_control_characters(
    client: FlaskClient,
) -> None:
    for version in ("1", "2"):
        document = client.get(f"/api/v{version}/openapi.json").json
        assert document is not None
        schemas = document["components"]["schemas"]
        for name, schema in schemas.items():
            if not name.endswith("Input"):
                continue
            for field, prop in schema["properties"].items():
                assert "anyOf" not in prop and "default" not in prop, (name, field)
                assert prop["type"] == "string"
                if "enum" in prop:  # a choice (an export's format): printable names only
                    assert all(str(v).isprintable() for v in prop["enum"]), (name, field)
                    continue
                assert re.search(prop["pattern"], "A\x00") is None, (name, field)
                assert re.search(prop["pattern"], "A\x85") is None, (name, field)
        parameters = document["paths"][f"/api/v{version}/users"]["get"]["parameters"]
        for parameter in parameters:
            assert "anyOf" not in parameter["schema"], parameter


def test_every_cursor_the_pattern_admits_is_one_position_and_back() -> None:
    pattern = re.compile(v2.ListQueryV2.model_json_schema()["properties"]["cursor"]["pattern"])
    rng = random.Random(8)
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    for after in (0, 1, 2**31, 2**63 - 1, *(rng.randrange(2**63) for _ in range(500))):
        cursor = v2.encode_cursor(after)
        assert pattern.fullmatch(cursor), after
        assert v2.decode_cursor(cursor) == after
    admitted = 0
    for _ in range(5000):
        text = "".join(rng.choice(alphabet) for _ in range(11))
        if pattern.fullmatch(text):
            admitted += 1
            after = v2.decode_cursor(text)
            assert 0 <= after <= 2**63 - 1
            assert v2.encode_cursor(after) == text
    assert admitted > 500


def test_every_version_needs_users_read_to_read_and_users_write_to_write(
    make_app: Any, keys: KeyStore
) -> None:
    app = make_app()
    user = authorized(app, keys).post(
        "/api/v2/users", json={"first_name": "Ada", "last_name": "King", "email": "ak@b.co"}
    )
    assert user.status_code == 201, user.get_data(as_text=True)
    anonymous = app.test_client()
    reader = authorized(app, keys, "users:read")
    writer = authorized(app, keys, "users:write")
    for version in ("1", "2"):
        one = f"/api/v{version}/users/{user.json['id']}"
        writes = [
            ("POST", f"/api/v{version}/users", {"email": "x@b.co"}),
            ("PATCH", one, {"email": "y@b.co"}),
            ("DELETE", one, None),
        ]
        for method, url in [("GET", f"/api/v{version}/users"), ("GET", one)]:
            refused = anonymous.open(url, method=method)
            assert refused.status_code == 401, url
            assert refused.mimetype == "application/problem+json"
            assert refused.headers["WWW-Authenticate"].startswith('Bearer error="invalid_token"')
            wrong = writer.open(url, method=method)
            assert wrong.status_code == 403 and wrong.json["scope"] == "users:read", url
            assert reader.open(url, method=method).status_code == 200, url
        for method, url, body in writes:
            assert anonymous.open(url, method=method, json=body).status_code == 401, url
            wrong = reader.open(url, method=method, json=body)
            assert wrong.status_code == 403, (method, url)
            assert (
                'error="insufficient_scope", scope="users:write"'
                in (wrong.headers["WWW-Authenticate"])
            )
    # The unversioned path is the default version's, under the same rule.
    assert anonymous.get("/api/users").status_code == 401
    assert reader.get("/api/users").status_code == 200


def test_public_paths_usage_and_metrics(make_app: Any, keys: KeyStore) -> None:
    app = make_app()
    anonymous = app.test_client()
    for path in ("/healthz", "/readyz", "/api/versions", "/api/v2/openapi.json", "/docs"):
        assert anonymous.get(path).status_code == 200, path
    assert anonymous.get("/usage").status_code == 401
    assert authorized(app, keys, "users:read").get("/usage").status_code == 403
    assert authorized(app, keys, "ops:read").get("/usage").status_code == 200
    # /metrics needs ops:read unless LOCKGATE_METRICS_PUBLIC says otherwise.
    assert anonymous.get("/metrics").status_code == 401
    assert authorized(app, keys, "ops:read").get("/metrics").status_code == 200
    assert make_app(LOCKGATE_METRICS_PUBLIC=True).test_client().get("/metrics").status_code == 200


def test_the_documents_say_which_scope_each_operation_needs(client: FlaskClient) -> None:
    document = client.get("/api/v2/openapi.json").json
    assert document is not None
    scheme = document["components"]["securitySchemes"]["oauth2"]
    flow = scheme["flows"]["clientCredentials"]
    assert flow["tokenUrl"] == "/auth/oauth/token"  # the issuer's origin: the page's own
    assert set(flow["scopes"]) == {"users:read", "users:write"}
    operations = document["paths"]["/api/v2/users/{user_id}"]
    assert operations["get"]["security"] == [{"oauth2": ["users:read"]}]
    assert operations["patch"]["security"] == [{"oauth2": ["users:write"]}]
    assert {"401", "403"} <= set(operations["delete"]["responses"])
