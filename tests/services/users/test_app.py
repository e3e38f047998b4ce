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
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from lockgate.fleet.database import upgrade
from services.users import create_app, v1, v2, web

MIGRATIONS = Path(__file__).resolve().parents[3] / "services" / "users" / "migrations"


@pytest.fixture
def make_app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("LOCKGATE_DATA_DIR", str(tmp_path))
    url = f"sqlite:///{tmp_path / 'users.db'}"
    upgrade(MIGRATIONS, url)

    def make(**config: Any) -> Flask:
        return create_app({"DATABASE_URL": url, "TESTING": True, **config})

    return make


@pytest.fixture
def client(make_app: Any) -> FlaskClient:
    app: Flask = make_app()
    return app.test_client()


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


def test_only_trusted_hosts_are_served(make_app: Any) -> None:
    client = make_app(LOCKGATE_TRUSTED_HOSTS=["users.example"]).test_client()
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
