"""Per-version OpenAPI documents and the version catalog."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Blueprint, Flask
from openapi_spec_validator import validate

from lockgate import Version, Versioning
from tests.conftest import NOW, POLICY, Clock


@pytest.mark.parametrize("label", ["0", "1", "2", "3"])
def test_every_document_is_valid_openapi_3_1(client: Any, label: str) -> None:
    response = client.get(f"/api/v{label}/openapi.json")
    assert response.status_code == 200
    document = response.get_json()
    assert document["openapi"] == "3.1.0"
    assert document["info"]["version"] == label
    validate(document)


def test_documents_list_exactly_the_routes_of_their_version(client: Any) -> None:
    v1 = client.get("/api/v1/openapi.json").get_json()["paths"]
    v2 = client.get("/api/v2/openapi.json").get_json()["paths"]
    assert set(v1) == {"/api/v1/users", "/api/v1/users/{id}"}
    assert set(v2) == {"/api/v2/users", "/api/v2/users/{id}", "/api/v2/orders"}
    assert set(v1["/api/v1/users"]) == {"get", "post"}
    assert client.get("/api/v0/openapi.json").get_json()["paths"] == {}


def test_deprecated_version_marks_operations(client: Any) -> None:
    v1 = client.get("/api/v1/openapi.json").get_json()
    operations = [op for item in v1["paths"].values() for op in item.values()]
    assert operations
    assert all(op["deprecated"] is True for op in operations)
    v2 = client.get("/api/v2/openapi.json").get_json()
    assert not any("deprecated" in op for item in v2["paths"].values() for op in item.values())


def test_lifecycle_extension(client: Any) -> None:
    lifecycle = client.get("/api/v1/openapi.json").get_json()["x-lifecycle"]
    assert lifecycle == {
        "status": "deprecated",
        "deprecated": "2026-01-01T00:00:00Z",
        "sunset": "2027-06-30T23:59:59Z",
        "successor": "2",
        "policy": POLICY,
        "brownouts": [{"start": "2027-03-01T00:00:00Z", "end": "2027-03-01T02:00:00Z"}],
    }


def test_pydantic_models_describe_bodies(client: Any) -> None:
    document = client.get("/api/v2/openapi.json").get_json()
    post = document["paths"]["/api/v2/users"]["post"]
    assert post["summary"] == "Create a user."
    assert post["description"] == "The name is required."
    request_ref = post["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    schemas = document["components"]["schemas"]
    assert schemas[request_ref.rsplit("/", 1)[1]]["required"] == ["name"]
    created = post["responses"]["201"]["content"]["application/json"]["schema"]
    assert created == {"$ref": "#/components/schemas/UserOut"}
    assert set(schemas["UserOut"]["properties"]) == {"id", "name"}
    assert {"400", "413", "415", "422"} <= set(post["responses"])
    listed = document["paths"]["/api/v2/users"]["get"]
    assert listed["summary"] == "List users"
    assert listed["responses"]["200"]["content"]["application/json"]["schema"] == {
        "type": "array",
        "items": {"$ref": "#/components/schemas/UserOut"},
    }
    path_param = document["paths"]["/api/v2/users/{id}"]["get"]["parameters"][0]
    assert path_param == {
        "name": "id",
        "in": "path",
        "required": True,
        "schema": {"type": "integer"},
    }


def test_operation_ids_stay_unique_across_blueprints_and_rules() -> None:
    app = Flask("t")
    versioning = Versioning(app, versions=[Version("1")], clock=Clock(NOW))
    for name in ("users", "orders"):
        blueprint = Blueprint(name, __name__)

        def show(id: int) -> dict[str, int]:
            return {"id": id}

        blueprint.add_url_rule(f"/{name}/<int:id>", view_func=show)
        blueprint.add_url_rule(f"/{name}/by-id/<int:id>", view_func=show)
        versioning.register_blueprint(blueprint, version="1")
    document = app.test_client().get("/api/v1/openapi.json").get_json()
    validate(document)
    ids = [op["operationId"] for item in document["paths"].values() for op in item.values()]
    assert len(ids) == 4
    assert len(set(ids)) == 4


def test_catalog(client: Any) -> None:
    response = client.get("/api/versions")
    assert response.status_code == 200
    catalog = {entry["version"]: entry for entry in response.get_json()}
    assert list(catalog) == ["0", "1", "2", "3"]
    assert {label: entry["status"] for label, entry in catalog.items()} == {
        "0": "retired",
        "1": "deprecated",
        "2": "current",
        "3": "preview",
    }
    assert catalog["1"]["sunset"] == "2027-06-30T23:59:59Z"
    assert catalog["1"]["successor"] == "2"
    assert catalog["1"]["policy"] == POLICY
    assert catalog["2"]["deprecated"] is None
    assert catalog["2"]["openapi"] == "/api/v2/openapi.json"
    for entry in catalog.values():
        assert {
            "version",
            "status",
            "deprecated",
            "sunset",
            "successor",
            "policy",
            "openapi",
        } <= set(entry)
