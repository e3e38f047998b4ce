"""One head implementation serving three versions through version changes.

The app is ``changes_app``: v3 is the head; ``RequireEmail`` leads from v2
to v3 (a required request field, an endpoint removed and one added) and
``RenameName`` from v1 to v2 (a field renamed, inside the list envelope too).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any, Literal

import pytest
from flask import Blueprint, Flask, jsonify
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from lockgate import (
    ConfigurationError,
    RequestInfo,
    ResponseInfo,
    Version,
    VersionChange,
    Versioning,
    endpoint,
    field,
    operation,
)
from lockgate import request as migrate_request
from lockgate import response as migrate_response
from lockgate.bodies import read_json

from . import changes_app
from .changes_app import FALLBACK_EMAIL, ItemIn, ItemOut, RenameName, RequireEmail

NOW = datetime(2026, 12, 1, tzinfo=UTC)
BODIES = {
    "1": {"name": "Ada Lovelace"},
    "2": {"full_name": "Ada Lovelace"},
    "3": {"full_name": "Ada Lovelace", "email": "ada@example.com"},
}


@pytest.fixture
def client() -> Any:
    return changes_app.create_app(clock=lambda: NOW).test_client()


@pytest.mark.parametrize("label", ["1", "2", "3"])
def test_create_read_and_list_in_each_version(client: Any, label: str) -> None:
    created = client.post(f"/api/v{label}/items", json=BODIES[label])
    assert created.status_code == 201
    assert created.headers["Location"] == f"/api/v{label}/items/1"
    expected = {"id": 1, "archived": False, **BODIES[label]}
    if label == "1":
        assert created.get_json() == expected
    assert created.get_json() == expected
    assert client.get(f"/api/v{label}/items/1").get_json() == expected
    listed = client.get(f"/api/v{label}/items").get_json()
    assert listed == {"items": [expected], "total": 1}


def test_one_store_seen_through_every_version(client: Any) -> None:
    client.post("/api/v1/items", json={"name": "Old Client"})
    client.post("/api/v3/items", json={"full_name": "New Client", "email": "new@example.com"})
    v1 = client.get("/api/v1/items").get_json()["items"]
    v2 = client.get("/api/v2/items").get_json()["items"]
    v3 = client.get("/api/v3/items").get_json()["items"]
    assert [item["name"] for item in v1] == ["Old Client", "New Client"]
    assert all("email" not in item and "full_name" not in item for item in v1)
    assert [item["full_name"] for item in v2] == ["Old Client", "New Client"]
    assert all("email" not in item for item in v2)
    # An old client's item got the head's required field from the upgrade.
    assert [item["email"] for item in v3] == [FALLBACK_EMAIL, "new@example.com"]


@pytest.mark.parametrize(
    ("label", "body", "fields"),
    [
        ("1", {"full_name": "x"}, {"name", "full_name"}),  # v1's names, not the head's
        ("1", {"name": ""}, {"name"}),  # the head's constraints, under v1's name
        ("2", {"full_name": "x", "email": "a@b.c"}, {"email"}),  # v2 has no email yet
        ("3", {"full_name": "x"}, {"email"}),
    ],
)
def test_validation_errors_name_the_versions_own_fields(
    client: Any, label: str, body: dict[str, Any], fields: set[str]
) -> None:
    response = client.post(f"/api/v{label}/items", json=body)
    assert response.status_code == 422
    assert response.mimetype == "application/problem+json"
    assert {error["field"] for error in response.get_json()["errors"]} == fields


def test_bad_json_in_an_old_version_is_the_same_400(client: Any) -> None:
    response = client.post("/api/v1/items", data=b'{"name": ', content_type="application/json")
    assert response.status_code == 400
    assert response.get_json()["code"] == "MalformedJson"
    assert client.get("/api/v1/items").get_json()["total"] == 0  # nothing half-created


def test_an_endpoint_added_later_is_unsupported_in_older_versions(client: Any) -> None:
    client.post("/api/v3/items", json=BODIES["3"])
    assert client.post("/api/v3/items/1/archive").get_json()["archived"] is True
    for label in ("1", "2"):
        response = client.post(f"/api/v{label}/items/1/archive")
        assert response.status_code == 404
        problem = response.get_json()
        assert problem["code"] == "UnsupportedApiVersion"
        assert problem["versions"] == ["3"]


def test_an_endpoint_removed_answers_only_in_the_versions_before(client: Any) -> None:
    client.post("/api/v1/items", json={"name": "Grace Hopper"})
    found = client.get("/api/v1/items/search?q=grace").get_json()
    assert found == {"items": [{"id": 1, "name": "Grace Hopper", "archived": False}], "total": 1}
    assert client.get("/api/v2/items/search?q=grace").get_json()["total"] == 1
    gone = client.get("/api/v3/items/search?q=grace")
    assert gone.status_code == 404
    assert gone.get_json()["code"] == "UnsupportedApiVersion"
    assert gone.get_json()["versions"] == ["1", "2"]


def test_problem_bodies_pass_through_unmigrated(client: Any) -> None:
    for label in ("1", "2", "3"):
        response = client.get(f"/api/v{label}/items/99")
        assert response.status_code == 404
        assert response.get_json()["code"] == "ItemNotFound"


@pytest.mark.parametrize(
    "headers_and_path",
    [
        ({}, "/api/v1/items/1"),
        ({"API-Version": "1"}, "/api/items/1"),
        ({"Accept": "application/vnd.items.v1+json"}, "/api/items/1"),
        ({}, "/api/items/1?version=1"),
    ],
)
def test_every_reader_gets_the_same_migrated_body(
    client: Any, headers_and_path: tuple[dict[str, str], str]
) -> None:
    headers, path = headers_and_path
    client.post("/api/v3/items", json=BODIES["3"])
    response = client.get(path, headers=headers)
    assert response.status_code == 200
    assert response.get_json() == {"id": 1, "name": "Ada Lovelace", "archived": False}
    assert response.headers["API-Version"] == "1"


def test_old_versions_keep_the_lifecycle_headers(client: Any) -> None:
    client.post("/api/v3/items", json=BODIES["3"])
    v1 = client.get("/api/v1/items/1")
    assert v1.headers["Deprecation"] == "@1767225600"  # 2026-01-01
    assert v1.headers["Sunset"] == "Fri, 31 Dec 2027 00:00:00 GMT"
    assert '</api/v3/items/1>; rel="successor-version"' in v1.headers["Link"]
    assert '<https://example.com/items-v1>; rel="deprecation"' in v1.headers["Link"]
    assert v1.headers["API-Deprecated-Versions"] == "1, 2"
    v3 = client.get("/api/v3/items/1")
    assert "Deprecation" not in v3.headers
    assert v3.headers["API-Supported-Versions"] == "3"


def _document(client: Any, label: str) -> dict[str, Any]:
    response = client.get(f"/api/v{label}/openapi.json")
    assert response.status_code == 200
    document: dict[str, Any] = response.get_json()
    return document


def test_each_versions_document_lists_exactly_its_fields_and_routes(client: Any) -> None:
    routes = {
        label: {
            (method, path)
            for path, item in _document(client, label)["paths"].items()
            for method in item
        }
        for label in ("1", "2", "3")
    }
    common = {("get", "/items"), ("post", "/items"), ("get", "/items/{item_id}")}
    assert routes["1"] == {(m, f"/api/v1{p}") for m, p in common | {("get", "/items/search")}}
    assert routes["2"] == {(m, f"/api/v2{p}") for m, p in common | {("get", "/items/search")}}
    assert routes["3"] == {
        (m, f"/api/v3{p}") for m, p in common | {("post", "/items/{item_id}/archive")}
    }
    schemas = {label: _document(client, label)["components"]["schemas"] for label in "123"}
    assert set(schemas["1"]["ItemOut"]["properties"]) == {"id", "name", "archived"}
    assert set(schemas["2"]["ItemOut"]["properties"]) == {"id", "full_name", "archived"}
    assert set(schemas["3"]["ItemOut"]["properties"]) == {"id", "full_name", "email", "archived"}
    assert schemas["1"]["ItemInInput"]["required"] == ["name"]
    assert schemas["2"]["ItemInInput"]["required"] == ["full_name"]
    assert schemas["3"]["ItemInInput"]["required"] == ["full_name", "email"]
    # The renamed field keeps the head's constraints.
    assert schemas["1"]["ItemInInput"]["properties"]["name"]["maxLength"] == 50
    # The list envelope refers to the version's own item schema.
    items = schemas["1"]["ItemPage"]["properties"]["items"]
    assert items == {
        "items": {"$ref": "#/components/schemas/ItemOut"},
        "title": "Items",
        "type": "array",
    }


def test_the_changelog_lists_every_change_with_what_it_breaks(client: Any) -> None:
    response = client.get("/api/changelog")
    assert response.status_code == 200
    versions = response.get_json()["versions"]
    assert [v["version"] for v in versions] == ["3", "2", "1"]
    assert [v["status"] for v in versions] == ["current", "deprecated", "deprecated"]
    (require_email,) = versions[0]["changes"]
    assert require_email["name"] == "RequireEmail"
    assert require_email["description"].startswith("Items need an `email`")
    assert require_email["breaking"] is True
    endpoints = {(e["path"], e["change"]): e["breaking"] for e in require_email["endpoints"]}
    assert endpoints == {
        ("/items/search", "removed"): True,
        ("/items/{item_id}/archive", "added"): False,
    }
    fields = {
        (f["schema"], f["field"], f["change"]): f["breaking"] for f in require_email["fields"]
    }
    # A new required request field breaks clients; a new response field does not.
    assert fields == {("ItemIn", "email", "added"): True, ("ItemOut", "email", "added"): False}
    (rename,) = versions[1]["changes"]
    assert rename["name"] == "RenameName" and rename["breaking"] is True
    assert {(f["schema"], f["field"], f["from"]) for f in rename["fields"]} == {
        ("ItemOut", "full_name", "name"),
        ("ItemIn", "full_name", "name"),
    }
    assert versions[2]["changes"] == []


def test_the_changelog_and_guide_pages(client: Any) -> None:
    page = client.get("/docs/changelog")
    assert page.status_code == 200 and page.mimetype == "text/html"
    text = page.get_data(as_text=True)
    assert "RenameName" in text and "RequireEmail" in text
    guide = client.get("/docs/migrations/v1-to-v3")
    assert guide.status_code == 200 and guide.mimetype == "text/html"
    html = guide.get_data(as_text=True)
    assert "use <code>full_name</code> where you used <code>name</code>" in html
    assert "send <code>email</code>: it is required now" in html
    assert "2027-12-31" in html  # v1's sunset, from the lifecycle in force
    assert client.get("/docs/migrations/v3-to-v1").status_code == 404
    assert client.get("/docs/migrations/v1-to-v9").status_code == 404
    only_one_step = client.get("/docs/migrations/v2-to-v3").get_data(as_text=True)
    assert "RequireEmail" in only_one_step and "RenameName" not in only_one_step


def test_the_head_version_runs_the_views_themselves() -> None:
    """No wrapper where there is nothing to do: the head pays nothing."""
    app = changes_app.create_app(clock=lambda: NOW)
    functions = app.view_functions
    assert functions["items_v3.create_item"].__name__ == "create_item"
    assert not hasattr(functions["items_v3.create_item"], "__wrapped__")
    assert functions["items_v1.create_item"].__wrapped__ is functions["items_v3.create_item"]


def test_an_etag_names_the_versions_own_bytes() -> None:
    """Served from the cache too: the entry holds the head's bytes, and each
    version's answer carries an ETag of its own."""
    client = changes_app.create_app(clock=lambda: NOW).test_client()
    client.post("/api/v3/items", json=BODIES["3"])
    v1 = client.get("/api/items/1", headers={"API-Version": "1"})
    v3 = client.get("/api/items/1", headers={"API-Version": "3"})
    assert v1.headers["ETag"] != v3.headers["ETag"]
    again = client.get(
        "/api/items/1", headers={"API-Version": "1", "If-None-Match": v1.headers["ETag"]}
    )
    assert again.status_code == 304
    hit = client.get("/api/items/1", headers={"API-Version": "1"})
    assert hit.headers["X-Cache"] == "hit"
    assert hit.get_json() == {"id": 1, "name": "Ada Lovelace", "archived": False}
    assert hit.headers["ETag"] == v1.headers["ETag"]


# -- changes that cannot be applied fail at startup, naming the change ---------


def _app_with(*changes: type[VersionChange]) -> Flask:
    app = Flask("broken")
    Versioning(
        app,
        versions=[Version("1"), Version("2", changes=list(changes))],
        head=changes_app.head_blueprint(),
        clock=lambda: NOW,
    )
    return app


def test_a_field_the_schema_lacks_fails_at_startup() -> None:
    class Typo(VersionChange):
        """A typo."""

        schemas = [field(ItemOut, "fullname").renamed(from_="name")]

    with pytest.raises(ConfigurationError, match=r"Typo .*ItemOut has no field 'fullname'"):
        _app_with(Typo)


def test_removing_a_field_the_newer_version_still_has_fails() -> None:
    class Wrong(VersionChange):
        """Wrong."""

        schemas = [field(ItemOut, "email").removed(str)]

    with pytest.raises(ConfigurationError, match=r"Wrong .*still has it"):
        _app_with(Wrong)


def test_a_path_no_route_has_fails_at_startup() -> None:
    class NoSuchPath(VersionChange):
        """Nothing there."""

        endpoints = [endpoint("/things", ["GET"]).removed()]

    with pytest.raises(ConfigurationError, match=r"NoSuchPath .*'/things' is no route"):
        _app_with(NoSuchPath)


def test_a_method_the_route_lacks_fails_at_startup() -> None:
    class NoSuchMethod(VersionChange):
        """Nothing there."""

        @migrate_request("/items", methods=["DELETE"])
        def upgrade(req: RequestInfo) -> None:
            pass

    with pytest.raises(ConfigurationError, match=r"NoSuchMethod .*has no method DELETE"):
        _app_with(NoSuchMethod)


def test_a_model_no_route_uses_fails_at_startup() -> None:
    class Unused(BaseModel):
        x: int

    class NotUsed(VersionChange):
        """Nobody sends this."""

        @migrate_response(Unused)
        def downgrade(res: ResponseInfo) -> None:
            pass

    with pytest.raises(ConfigurationError, match=r"NotUsed .*Unused is in the response of no"):
        _app_with(NotUsed)


def test_changes_without_a_head_fail() -> None:
    with pytest.raises(ConfigurationError, match="no head="):
        Versioning(Flask("x"), versions=[Version("1"), Version("2", changes=[RenameName])])


def test_a_change_on_the_oldest_version_or_listed_twice_fails() -> None:
    with pytest.raises(ConfigurationError, match="oldest"):
        Versioning(
            Flask("x"),
            versions=[Version("1", changes=[RenameName]), Version("2")],
            head=changes_app.head_blueprint(),
        )
    with pytest.raises(ConfigurationError, match="RenameName is listed by versions 2 and 3"):
        Versioning(
            Flask("x"),
            versions=[
                Version("1"),
                Version("2", changes=[RenameName]),
                Version("3", changes=[RenameName, RequireEmail]),
            ],
            head=changes_app.head_blueprint(),
        )


def test_an_instruction_without_its_verb_fails_at_class_creation() -> None:
    with pytest.raises(ConfigurationError, match="Unfinished"):

        class Unfinished(VersionChange):
            """Forgot .added()."""

            schemas = [field(ItemIn, "email")]  # type: ignore[list-item]


# -- retyped and removed fields, kept validators --------------------------------


class Reading(BaseModel):
    sensor: str
    value: float

    @field_validator("sensor")
    @classmethod
    def lower(cls, value: str) -> str:
        return value.lower()


class ValueWasText(VersionChange):
    """`value` was a string and `unit` a field of its own."""

    schemas = [
        field(Reading, "value").retyped(from_=str),
        field(Reading, "unit").removed(str, default="C"),
    ]

    @migrate_request(Reading)
    def upgrade(req: RequestInfo) -> None:
        req.body["value"] = float(req.body["value"])
        req.body.pop("unit", None)

    @migrate_response(Reading)
    def downgrade(res: ResponseInfo) -> None:
        res.body["value"] = f"{res.body['value']:g}"
        res.body["unit"] = "C"


def _readings_app() -> Flask:
    bp = Blueprint("readings", __name__, url_prefix="/readings")

    @bp.post("")
    @operation(request=Reading, response=Reading, status=201)
    def create() -> Any:
        return jsonify(read_json(Reading).model_dump()), 201

    app = Flask("readings")
    Versioning(
        app,
        versions=[Version("1"), Version("2", changes=[ValueWasText])],
        head=bp,
        clock=lambda: NOW,
    )
    return app


def test_a_retyped_and_a_removed_field_in_the_older_version() -> None:
    client = _readings_app().test_client()
    old = client.post("/api/v1/readings", json={"sensor": "T1", "value": "21.5"})
    assert old.status_code == 201
    # The head's validator (lower-casing) still runs on the older model.
    assert old.get_json() == {"sensor": "t1", "value": "21.5", "unit": "C"}
    refused = client.post("/api/v1/readings", json={"sensor": "t1", "value": 21.5})
    assert refused.status_code == 422  # v1's value is text
    assert refused.get_json()["errors"][0]["field"] == "value"
    new = client.post("/api/v2/readings", json={"sensor": "T1", "value": 21.5})
    assert new.get_json() == {"sensor": "t1", "value": 21.5}
    v1 = client.get("/api/v1/openapi.json").get_json()["components"]["schemas"]
    assert v1["ReadingInput"]["properties"]["value"]["type"] == "string"
    assert v1["ReadingInput"]["properties"]["unit"]["default"] == "C"
    assert v1["ReadingInput"]["required"] == ["sensor", "value"]


# -- what a review found: bodies that are missing, unions, validators, defaults, aliases


@pytest.mark.parametrize(
    ("data", "content_type"),
    [(None, None), (b"name=x", "application/x-www-form-urlencoded"), (b"x", "text/plain")],
)
def test_an_old_version_without_a_json_body_answers_as_the_head_does(
    client: Any, data: bytes | None, content_type: str | None
) -> None:
    answers = [
        client.post(f"/api/v{label}/items", data=data, content_type=content_type)
        for label in ("1", "3")
    ]
    assert [a.status_code for a in answers] == [415, 415]
    assert {a.get_json()["code"] for a in answers} == {"UnsupportedMediaType"}


class Cat(BaseModel):
    kind: Literal["cat"] = "cat"
    name: str
    lives: int


class Dog(BaseModel):
    kind: Literal["dog"] = "dog"
    name: str
    tricks: list[str]


class Pets(BaseModel):
    pets: list[Cat | Dog]


class CatsHadNoLives(VersionChange):
    """Cats gained `lives`."""

    schemas = [field(Cat, "lives").added()]

    @migrate_response(Cat)
    def downgrade(res: ResponseInfo) -> None:
        del res.body["lives"]


def test_a_migration_by_schema_reaches_only_its_members_of_a_union() -> None:
    bp = Blueprint("pets", __name__, url_prefix="/pets")

    @bp.get("")
    @operation(response=Pets)
    def pets() -> Any:
        return {
            "pets": [
                {"kind": "cat", "name": "Tom", "lives": 9},
                {"kind": "dog", "name": "Rex", "tricks": ["sit"]},
            ]
        }

    app = Flask("pets")
    Versioning(app, versions=[Version("1"), Version("2", changes=[CatsHadNoLives])], head=bp)
    v1 = app.test_client().get("/api/v1/pets")
    assert v1.status_code == 200
    assert v1.get_json()["pets"] == [
        {"kind": "cat", "name": "Tom"},
        {"kind": "dog", "name": "Rex", "tricks": ["sit"]},
    ]


class Thing(BaseModel):
    model_config = ConfigDict(extra="forbid")

    full_name: str = Field(alias="fullName")
    size: int
    note: str

    @model_validator(mode="after")
    def named(self) -> Thing:
        if not self.full_name.strip():
            raise ValueError("a name is needed")
        return self


class NoteWasOptional(VersionChange):
    """`note` became required; `fullName` was `shown`."""

    schemas = [
        field(Thing, "note").retyped(from_=str, default="none"),
        field(Thing, "full_name").renamed(from_="shown"),
    ]

    @migrate_request(Thing)
    def upgrade(req: RequestInfo) -> None:
        req.body["fullName"] = req.body.pop("shown")
        req.body["note"] = req.body["note"].upper()


def _things_app() -> Flask:
    bp = Blueprint("things", __name__, url_prefix="/things")

    @bp.post("")
    @operation(request=Thing, status=201)
    def create() -> Any:
        thing = read_json(Thing)
        return {"name": thing.full_name, "note": thing.note}, 201

    app = Flask("things")
    Versioning(app, versions=[Version("1"), Version("2", changes=[NoteWasOptional])], head=bp)
    return app


def test_an_old_default_goes_up_and_a_renamed_alias_takes_the_old_name() -> None:
    client = _things_app().test_client()
    old = client.post("/api/v1/things", json={"shown": "lamp", "size": 1})
    assert old.status_code == 201, old.get_json()
    assert old.get_json() == {"name": "lamp", "note": "NONE"}  # v1's default, migrated
    # v1 knows no alias: its field is `shown` on the wire, not `fullName`.
    refused = client.post("/api/v1/things", json={"fullName": "lamp", "size": 1})
    assert refused.status_code == 422
    assert {e["field"] for e in refused.get_json()["errors"]} == {"shown", "fullName"}
    # The head's model validator reads `full_name`: v1's model does not run it.
    blank = client.post("/api/v1/things", json={"shown": " ", "size": 1})
    assert blank.status_code == 422  # refused by the head, after the migration
    assert (
        client.post("/api/v2/things", json={"fullName": " ", "size": 1, "note": "n"}).status_code
        == 422
    )


def test_a_header_migration_leaves_the_body_and_derived_attributes_right() -> None:
    class AuthWasCustom(VersionChange):
        """`X-Key` became `Authorization: Bearer`."""

        @migrate_request("/echo", methods=["POST"])
        def upgrade(req: RequestInfo) -> None:
            req.headers["Authorization"] = f"Bearer {req.headers.pop('X-Key')}"
            req.body["padding"] = "x" * 40

    bp = Blueprint("echo", __name__)

    @bp.post("/echo")
    def echo() -> Any:
        from flask import request as flask_request

        auth = flask_request.authorization
        return {
            "auth": None if auth is None else auth.token,
            "length": flask_request.content_length,
            "read": len(flask_request.get_data()),
            "body": flask_request.get_json(),
        }

    app = Flask("echo")

    @app.before_request
    def peek() -> None:  # reads derived attributes before the migration runs
        from flask import request as flask_request

        _ = (flask_request.authorization, flask_request.content_length)

    Versioning(app, versions=[Version("1"), Version("2", changes=[AuthWasCustom])], head=bp)
    answer = app.test_client().post("/api/v1/echo", json={"a": 1}, headers={"X-Key": "k"})
    assert answer.status_code == 200, answer.get_data(as_text=True)
    body = answer.get_json()
    assert body["auth"] == "k"
    assert body["body"] == {"a": 1, "padding": "x" * 40}
    assert body["length"] == body["read"] > len(json.dumps({"a": 1}))  # the migrated body


def test_a_migration_with_self_fails_when_the_class_is_made() -> None:
    with pytest.raises(ConfigurationError, match="no self"):

        class WithSelf(VersionChange):
            """Oops."""

            @migrate_request(ItemIn)
            def upgrade(self, req: RequestInfo) -> None:  # type: ignore[misc]
                pass
