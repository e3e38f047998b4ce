"""Issue 9's contract for version changes, black-box through the HTTP interface.

One head implementation serves every version; each older version is described
by the :class:`~lockgate.VersionChange` classes leading from it to its
successor. These tests drive the reference app (``changes_app``) and apps of
their own through Flask's test client only:

- ``notes``: FOUR versions (v1 -> v2 -> v3 -> v4); every change appends to a
  ``trail`` list on the way up and on the way down, so the order in which the
  migrations ran is visible in the body;
- ``things``: query-parameter and header migrations (``req.query``, ``req.headers``);
- ``jobs``: a response migration by path that changes the status code and the
  headers, and one with ``errors=True`` that migrates a problem+json body;
- ``library``: a by-schema response migration reaching the objects of its
  schema nested in an envelope, in lists and in dict values.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from flask import Blueprint, Flask, jsonify, request
from pydantic import BaseModel, ConfigDict, Field

from lockgate import (
    ConfigurationError,
    Problem,
    RequestInfo,
    ResponseInfo,
    Version,
    VersionChange,
    Versioning,
    endpoint,
    field,
    operation,
    url_for,
)
from lockgate import request as migrate_request
from lockgate import response as migrate_response
from lockgate.bodies import query_problem, read_json
from lockgate.runtime import Runtime
from tests.versioning import changes_app

NOW = datetime(2026, 12, 1, tzinfo=UTC)


def clock() -> datetime:
    return NOW


def body_of(response: Any) -> Any:
    """The JSON body, whatever JSON media type it came back as."""
    return json.loads(response.get_data(as_text=True))


def problem(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.content_type == "application/problem+json"
    found: dict[str, Any] = body_of(response)
    assert found["status"] == status
    assert found["code"] == code, found
    return found


def error_fields(response: Any) -> set[str]:
    found = problem(response, 422, "ValidationFailed")
    return {error["field"] for error in found["errors"]}


def openapi(client: Any, label: str) -> dict[str, Any]:
    response = client.get(f"/api/v{label}/openapi.json")
    assert response.status_code == 200
    document: dict[str, Any] = response.get_json()
    return document


def routes_of(document: dict[str, Any], label: str) -> dict[str, set[str]]:
    """``{path below the version: {methods}}`` of an OpenAPI document."""
    base = f"/api/v{label}"
    found = {}
    for path, operations in document["paths"].items():
        assert path.startswith(base), path
        found[path[len(base) :]] = set(operations)
    return found


def schema(document: dict[str, Any], name: str) -> dict[str, Any]:
    found: dict[str, Any] = document["components"]["schemas"][name]
    return found


def properties(document: dict[str, Any], name: str) -> set[str]:
    return set(schema(document, name).get("properties", {}))


def required(document: dict[str, Any], name: str) -> set[str]:
    return set(schema(document, name).get("required", []))


def links(response: Any) -> list[str]:
    return [part.strip() for part in response.headers.get("Link", "").split(",") if part.strip()]


LIFECYCLE_HEADERS = (
    "API-Version",
    "API-Supported-Versions",
    "API-Deprecated-Versions",
    "Deprecation",
    "Sunset",
    "Link",
)


# --------------------------------------------------------------------------------------
# The reference app (tests/versioning/changes_app.py): three versions
# --------------------------------------------------------------------------------------


@pytest.fixture
def items() -> Any:
    return changes_app.create_app(clock=clock).test_client()


def test_reference_create_in_every_version_answers_in_that_version(items: Any) -> None:
    v1 = items.post("/api/v1/items", json={"name": "Ada Lovelace"})
    assert v1.status_code == 201
    assert v1.get_json() == {"id": 1, "name": "Ada Lovelace", "archived": False}
    assert v1.headers["Location"] == "/api/v1/items/1"

    v2 = items.post("/api/v2/items", json={"full_name": "Grace Hopper"})
    assert v2.status_code == 201
    assert v2.get_json() == {"id": 2, "full_name": "Grace Hopper", "archived": False}
    assert v2.headers["Location"] == "/api/v2/items/2"

    v3 = items.post("/api/v3/items", json={"full_name": "Alan Turing", "email": "at@example.com"})
    assert v3.status_code == 201
    assert v3.get_json() == {
        "id": 3,
        "full_name": "Alan Turing",
        "email": "at@example.com",
        "archived": False,
    }
    assert v3.headers["Location"] == "/api/v3/items/3"


def test_reference_one_item_read_in_every_version(items: Any) -> None:
    items.post("/api/v1/items", json={"name": "Ada Lovelace"})
    items.post("/api/v3/items", json={"full_name": "Alan Turing", "email": "at@example.com"})
    # an item created in v1 got the fallback email on its way up to the head
    assert items.get("/api/v3/items/1").get_json() == {
        "id": 1,
        "full_name": "Ada Lovelace",
        "email": changes_app.FALLBACK_EMAIL,
        "archived": False,
    }
    assert items.get("/api/v2/items/1").get_json() == {
        "id": 1,
        "full_name": "Ada Lovelace",
        "archived": False,
    }
    assert items.get("/api/v1/items/2").get_json() == {
        "id": 2,
        "name": "Alan Turing",
        "archived": False,
    }


def test_reference_list_envelope_in_every_version(items: Any) -> None:
    items.post("/api/v1/items", json={"name": "Ada"})
    items.post("/api/v2/items", json={"full_name": "Grace"})
    expected = {
        "1": [
            {"id": 1, "name": "Ada", "archived": False},
            {"id": 2, "name": "Grace", "archived": False},
        ],
        "2": [
            {"id": 1, "full_name": "Ada", "archived": False},
            {"id": 2, "full_name": "Grace", "archived": False},
        ],
        "3": [
            {"id": 1, "full_name": "Ada", "email": changes_app.FALLBACK_EMAIL, "archived": False},
            {"id": 2, "full_name": "Grace", "email": changes_app.FALLBACK_EMAIL, "archived": False},
        ],
    }
    for label, wanted in expected.items():
        response = items.get(f"/api/v{label}/items")
        assert response.status_code == 200
        assert response.get_json() == {"items": wanted, "total": 2}, label
    # the query model still limits the page in an old version
    assert items.get("/api/v1/items?limit=1").get_json() == {
        "items": [{"id": 1, "name": "Ada", "archived": False}],
        "total": 2,
    }


def test_reference_legacy_search_in_old_versions_only(items: Any) -> None:
    items.post("/api/v1/items", json={"name": "Ada Lovelace"})
    items.post("/api/v1/items", json={"name": "Bob"})
    assert items.get("/api/v1/items/search?q=ada").get_json() == {
        "items": [{"id": 1, "name": "Ada Lovelace", "archived": False}],
        "total": 1,
    }
    assert items.get("/api/v2/items/search?q=ada").get_json() == {
        "items": [{"id": 1, "full_name": "Ada Lovelace", "archived": False}],
        "total": 1,
    }
    found = problem(items.get("/api/v3/items/search?q=ada"), 404, "UnsupportedApiVersion")
    assert found["versions"] == ["1", "2"]


def test_reference_archive_is_new_in_v3(items: Any) -> None:
    items.post("/api/v3/items", json={"full_name": "Ada", "email": "ada@example.com"})
    archived = items.post("/api/v3/items/1/archive")
    assert archived.status_code == 200
    assert archived.get_json()["archived"] is True
    for label in ("1", "2"):
        found = problem(items.post(f"/api/v{label}/items/1/archive"), 404, "UnsupportedApiVersion")
        assert found["versions"] == ["3"]
    # and what v3 did is seen in v1's shape
    assert items.get("/api/v1/items/1").get_json() == {"id": 1, "name": "Ada", "archived": True}


def test_reference_validation_names_each_versions_fields(items: Any) -> None:
    # v1 calls it name; the head's name is unknown there
    assert error_fields(items.post("/api/v1/items", json={})) == {"name"}
    assert error_fields(items.post("/api/v1/items", json={"full_name": "Ada"})) == {
        "name",
        "full_name",
    }
    # the head's constraints hold on the renamed field
    assert error_fields(items.post("/api/v1/items", json={"name": ""})) == {"name"}
    assert error_fields(items.post("/api/v1/items", json={"name": "x" * 51})) == {"name"}
    # v2 has full_name and no email (extra="forbid" is kept)
    assert error_fields(items.post("/api/v2/items", json={"name": "Ada"})) == {"full_name", "name"}
    assert error_fields(
        items.post("/api/v2/items", json={"full_name": "Ada", "email": "a@example.com"})
    ) == {"email"}
    # v3 requires email
    assert error_fields(items.post("/api/v3/items", json={"full_name": "Ada"})) == {"email"}
    # nothing was created by any of them
    assert items.get("/api/v3/items").get_json() == {"items": [], "total": 0}


def test_reference_problem_bodies_pass_through_by_schema_migrations(items: Any) -> None:
    # @response(ItemOut) would fail on a problem body (it pops full_name): it is not applied
    for label in ("1", "2", "3"):
        found = problem(items.get(f"/api/v{label}/items/99"), 404, "ItemNotFound")
        assert found["detail"] == "there is no item 99"


def test_reference_openapi_of_each_version(items: Any) -> None:
    v1, v2, v3 = (openapi(items, label) for label in ("1", "2", "3"))
    assert routes_of(v1, "1") == {
        "/items": {"get", "post"},
        "/items/{item_id}": {"get"},
        "/items/search": {"get"},
    }
    assert routes_of(v2, "2") == routes_of(v1, "1")
    assert routes_of(v3, "3") == {
        "/items": {"get", "post"},
        "/items/{item_id}": {"get"},
        "/items/{item_id}/archive": {"post"},
    }
    assert properties(v1, "ItemOut") == {"id", "name", "archived"}
    assert required(v1, "ItemOut") == {"id", "name"}
    assert properties(v1, "ItemInInput") == {"name"}
    assert required(v1, "ItemInInput") == {"name"}
    assert properties(v2, "ItemOut") == {"id", "full_name", "archived"}
    assert required(v2, "ItemOut") == {"id", "full_name"}
    assert properties(v2, "ItemInInput") == {"full_name"}
    assert required(v2, "ItemInInput") == {"full_name"}
    assert properties(v3, "ItemOut") == {"id", "full_name", "email", "archived"}
    assert required(v3, "ItemOut") == {"id", "full_name", "email"}
    assert properties(v3, "ItemInInput") == {"full_name", "email"}
    assert required(v3, "ItemInInput") == {"full_name", "email"}
    for document in (v1, v2, v3):
        assert properties(document, "ItemPage") == {"items", "total"}
    # the renamed field keeps the head's constraints in the old document
    assert schema(v1, "ItemInInput")["properties"]["name"]["minLength"] == 1
    assert schema(v1, "ItemInInput")["properties"]["name"]["maxLength"] == 50
    # the request body of v1's create refers to v1's input schema
    post = v1["paths"]["/api/v1/items"]["post"]
    assert post["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ItemInInput"
    }
    assert "201" in post["responses"]
    # the old versions are deprecated
    assert post.get("deprecated") is True
    assert v3["paths"]["/api/v3/items"]["post"].get("deprecated") is not True
    assert [v["info"]["version"] for v in (v1, v2, v3)] == ["1", "2", "3"]


def test_reference_changelog_json(items: Any) -> None:
    response = items.get("/api/changelog")
    assert response.status_code == 200
    assert response.content_type == "application/json"
    versions = response.get_json()["versions"]
    assert [v["version"] for v in versions] == ["3", "2", "1"]
    assert [v["status"] for v in versions] == ["current", "deprecated", "deprecated"]
    v3, v2, v1 = versions
    assert v1["changes"] == []
    assert [c["name"] for c in v3["changes"]] == ["RequireEmail"]
    assert [c["name"] for c in v2["changes"]] == ["RenameName"]

    rename = v2["changes"][0]
    assert rename["description"] == changes_app.RenameName.__doc__.strip()
    assert rename["breaking"] is True
    assert rename["endpoints"] == []
    by_schema = {(f["schema"], f["field"]): f for f in rename["fields"]}
    assert set(by_schema) == {("ItemOut", "full_name"), ("ItemIn", "full_name")}
    assert all(f["breaking"] is True for f in rename["fields"])

    email = v3["changes"][0]
    assert email["description"] == (
        "Items need an `email`; items can be archived; the legacy search is gone\n"
        "(list with `GET /items` instead)."
    )
    assert email["breaking"] is True
    endpoints = {e["path"]: e for e in email["endpoints"]}
    assert set(endpoints) == {"/items/search", "/items/{item_id}/archive"}
    assert endpoints["/items/search"]["breaking"] is True
    assert endpoints["/items/{item_id}/archive"]["breaking"] is False
    fields = {(f["schema"], f["field"]): f["breaking"] for f in email["fields"]}
    # a required field added to a request breaks clients; one added to a response does not
    assert fields == {("ItemIn", "email"): True, ("ItemOut", "email"): False}


def test_reference_changelog_page_and_migration_guides(items: Any) -> None:
    page = items.get("/docs/changelog")
    assert page.status_code == 200
    assert page.mimetype == "text/html"
    text = page.get_data(as_text=True)
    assert "RenameName" in text and "RequireEmail" in text
    for old, new, names, absent in (
        ("1", "2", ["RenameName"], ["RequireEmail"]),
        ("2", "3", ["RequireEmail"], ["RenameName"]),
        ("1", "3", ["RenameName", "RequireEmail"], []),
    ):
        guide = items.get(f"/docs/migrations/v{old}-to-v{new}")
        assert guide.status_code == 200, (old, new)
        assert guide.mimetype == "text/html"
        text = guide.get_data(as_text=True)
        for name in names:
            assert name in text, (old, new, name)
        for name in absent:
            assert name not in text, (old, new, name)


def folder_app() -> Any:
    """The reference app's lifecycle, folder style (no changes): the core as it was."""
    app = Flask("items_folder")
    app.config.update(TESTING=True, LOCKGATE_VENDOR="items")
    versions = [
        Version(
            "1",
            deprecated="2026-01-01",
            sunset="2027-12-31",
            successor="3",
            policy="https://example.com/items-v1",
        ),
        Version("2", deprecated="2026-06-01", successor="3"),
        Version("3"),
    ]
    versioning = Versioning(app, versions=versions, clock=clock)
    bp = Blueprint("items", __name__, url_prefix="/items")

    @bp.get("/<int:item_id>")
    def get_item(item_id: int) -> Any:
        return jsonify(id=item_id)

    @bp.get("")
    def list_items() -> Any:
        return jsonify(items=[], total=0)

    versioning.register_blueprint(bp, versions=["1", "2", "3"])
    return app.test_client()


@pytest.mark.parametrize("label", ["1", "2", "3"])
@pytest.mark.parametrize("path", ["/items", "/items/1", "/items/99"])
def test_reference_lifecycle_headers_as_the_core_gives_them(
    items: Any, label: str, path: str
) -> None:
    items.post("/api/v3/items", json={"full_name": "Ada", "email": "ada@example.com"})
    served = items.get(f"/api/v{label}{path}")
    core = folder_app().get(f"/api/v{label}{path}")
    for name in LIFECYCLE_HEADERS:
        assert served.headers.get(name) == core.headers.get(name), (name, label, path)


def test_reference_lifecycle_headers_of_v1(items: Any) -> None:
    items.post("/api/v3/items", json={"full_name": "Ada", "email": "ada@example.com"})
    response = items.get("/api/v1/items/1")
    assert response.headers["API-Version"] == "1"
    assert response.headers["API-Supported-Versions"] == "3"
    assert response.headers["API-Deprecated-Versions"] == "1, 2"
    assert response.headers["Deprecation"] == "@1767225600"  # 2026-01-01T00:00:00Z
    assert response.headers["Sunset"] == "Fri, 31 Dec 2027 00:00:00 GMT"
    assert '</api/v3/items/1>; rel="successor-version"' in links(response)
    assert any(
        link.startswith("<https://example.com/items-v1>") and 'rel="deprecation"' in link
        for link in links(response)
    )
    head = items.get("/api/v3/items/1")
    assert "Deprecation" not in head.headers and "Sunset" not in head.headers


def readers(label: str, path: str) -> list[tuple[str, dict[str, str]]]:
    """One request in version ``label`` as each of the four readers reads it."""
    joiner = "&" if "?" in path else "?"
    return [
        (f"/api/v{label}{path}", {}),
        (f"/api/{path.lstrip('/')}", {"API-Version": label}),
        (f"/api/{path.lstrip('/')}", {"Accept": f"application/vnd.items.v{label}+json"}),
        (f"/api/{path.lstrip('/')}{joiner}version={label}", {}),
    ]


def test_reference_four_readers_give_the_same_migrated_bodies(items: Any) -> None:
    created = []
    for url, headers in readers("1", "/items"):
        response = items.post(url, json={"name": "Ada Lovelace"}, headers=headers)
        assert response.status_code == 201, (url, headers, response.get_data(as_text=True))
        assert response.headers["API-Version"] == "1"
        created.append(body_of(response))
    assert created == [{"id": n, "name": "Ada Lovelace", "archived": False} for n in range(1, 5)]
    for url, headers in readers("1", "/items/2"):
        response = items.get(url, headers=headers)
        assert response.status_code == 200, (url, headers)
        assert body_of(response) == {"id": 2, "name": "Ada Lovelace", "archived": False}
    pages = [
        body_of(items.get(url, headers=headers)) for url, headers in readers("1", "/items?limit=2")
    ]
    assert (
        pages
        == [
            {
                "items": [
                    {"id": 1, "name": "Ada Lovelace", "archived": False},
                    {"id": 2, "name": "Ada Lovelace", "archived": False},
                ],
                "total": 4,
            }
        ]
        * 4
    )
    for url, headers in readers("1", "/items"):
        # validation in v1's shape whichever way v1 was asked for
        response = items.post(url, json={"full_name": "Ada"}, headers=headers)
        assert error_fields(response) == {"name", "full_name"}, (url, headers)
    for url, headers in readers("2", "/items/1/archive"):
        problem(items.post(url, headers=headers), 404, "UnsupportedApiVersion")


def test_reference_one_path_in_several_versions_keeps_each_versions_body(items: Any) -> None:
    """The head's view is cached and ETagged by the runtime: a version asked for by
    header on the same unversioned path still gets its own body and validator."""
    items.post("/api/v3/items", json={"full_name": "Ada", "email": "ada@example.com"})
    expected = {
        "3": {"id": 1, "full_name": "Ada", "email": "ada@example.com", "archived": False},
        "1": {"id": 1, "name": "Ada", "archived": False},
        "2": {"id": 1, "full_name": "Ada", "archived": False},
    }
    etags = {}
    for _ in range(2):  # the second round is served from whatever was cached
        for label, wanted in expected.items():
            response = items.get("/api/items/1", headers={"API-Version": label})
            assert response.status_code == 200
            assert response.get_json() == wanted, label
            etags.setdefault(label, response.headers.get("ETag"))
            assert response.headers.get("ETag") == etags[label]
    assert len(set(etags.values())) == 3
    # v3's validator does not make v1's body "not modified"
    stale = items.get("/api/v1/items/1", headers={"If-None-Match": etags["3"]})
    assert stale.status_code == 200
    assert stale.get_json() == expected["1"]
    assert items.get("/api/v1/items/1", headers={"If-None-Match": etags["1"]}).status_code == 304


# --------------------------------------------------------------------------------------
# notes: four versions, migrations observable in order
# --------------------------------------------------------------------------------------


class NoteIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    title: str = Field(min_length=1, max_length=40)
    level: int = Field(1, ge=1, le=5)
    trail: list[str] = []


class NoteOut(BaseModel):
    id: int
    title: str
    level: int
    pinned: bool = False
    trail: list[str]


class NotePage(BaseModel):
    notes: list[NoteOut]
    count: int


class NoteListing(BaseModel):
    limit: int = Field(10, ge=1, le=100)


class ToSubject(VersionChange):
    """`headline` became `subject`; the legacy listing is gone."""

    schemas = [
        field(NoteIn, "subject").renamed(from_="headline"),
        field(NoteOut, "subject").renamed(from_="headline"),
    ]
    endpoints = [endpoint("/notes/legacy", ["GET"]).removed()]

    @migrate_request(NoteIn)
    def up(req: RequestInfo) -> None:
        req.body["subject"] = req.body.pop("headline")
        req.body["trail"] = [*req.body.get("trail", []), "up2"]

    @migrate_response(NoteOut)
    def down(res: ResponseInfo) -> None:
        res.body["headline"] = res.body.pop("subject")
        res.body["trail"].append("down2")


class Pinning(VersionChange):
    """Notes can be pinned (`pinned`, `POST /notes/{note_id}/pin`)."""

    schemas = [field(NoteOut, "pinned").added()]
    endpoints = [endpoint("/notes/<int:note_id>/pin").added()]

    @migrate_request("/notes", methods=["POST"])
    def up(req: RequestInfo) -> None:
        req.body["trail"] = [*req.body.get("trail", []), "up3a"]

    @migrate_response(NoteOut)
    def down(res: ResponseInfo) -> None:
        res.body.pop("pinned")
        res.body["trail"].append("down3a")


class LevelAsNumber(VersionChange):
    """`level` is a number, no longer a string."""

    schemas = [
        field(NoteIn, "level").retyped(from_=str, default="1"),
        field(NoteOut, "level").retyped(from_=str),
    ]

    @migrate_request(NoteIn)
    def up(req: RequestInfo) -> None:
        if "level" in req.body:
            req.body["level"] = int(req.body["level"])
        req.body["trail"] = [*req.body.get("trail", []), "up3b"]

    @migrate_response(NoteOut)
    def down(res: ResponseInfo) -> None:
        res.body["level"] = str(res.body["level"])
        res.body["trail"].append("down3b")


class ToTitle(VersionChange):
    """`subject` became `title`; `legacy` is gone; so is the export; pins can be removed."""

    schemas = [
        field(NoteIn, "title").renamed(from_="subject"),
        field(NoteOut, "subject").renamed(to="title"),
        field(NoteOut, "legacy").removed(str, default=""),
    ]
    endpoints = [
        endpoint("/notes/export", ["GET"]).removed(),
        endpoint("/notes/{note_id}/pin", ["DELETE"]).added(),
    ]

    @migrate_request(NoteIn)
    def up(req: RequestInfo) -> None:
        req.body["title"] = req.body.pop("subject")
        req.body["trail"] = [*req.body.get("trail", []), "up4"]

    @migrate_response(NoteOut)
    def down(res: ResponseInfo) -> None:
        res.body["subject"] = res.body.pop("title")
        res.body["legacy"] = "kept"
        res.body["trail"].append("down4")


def notes_versions() -> list[Version]:
    # newest first, as the issue writes them: the order given does not matter
    return [
        Version("4", changes=[ToTitle]),
        Version("3", changes=[Pinning, LevelAsNumber]),
        Version("2", deprecated="2026-09-01", successor="4", changes=[ToSubject]),
        Version("1", deprecated="2026-03-01", sunset="2027-06-01", successor="4"),
    ]


def notes_head() -> Blueprint:
    bp = Blueprint("notes", __name__, url_prefix="/notes")
    store: dict[int, dict[str, Any]] = {}

    def shown(note: dict[str, Any]) -> dict[str, Any]:
        return {**note, "trail": [*note["trail"], "head"]}

    def one(note_id: int) -> dict[str, Any]:
        if note_id not in store:
            raise Problem(404, f"there is no note {note_id}", code="NoteNotFound")
        return store[note_id]

    @bp.get("")
    @operation(query=NoteListing, response=NotePage)
    def list_notes() -> Any:
        limit = int(request.args.get("limit", 10))
        notes = [shown(store[key]) for key in sorted(store)][:limit]
        return jsonify(notes=notes, count=len(store))

    @bp.post("")
    @operation(request=NoteIn, response=NoteOut, status=201)
    def create_note() -> Any:
        body = read_json(NoteIn)
        note_id = len(store) + 1
        store[note_id] = {
            "id": note_id,
            "title": body.title,
            "level": body.level,
            "pinned": False,
            "trail": body.trail,
        }
        location = url_for("notes.get_note", note_id=note_id)
        return jsonify(shown(store[note_id])), 201, {"Location": location}

    @bp.get("/<int:note_id>")
    @operation(response=NoteOut)
    def get_note(note_id: int) -> Any:
        return jsonify(shown(one(note_id)))

    @bp.get("/legacy")
    @operation(response=NotePage)
    def legacy_notes() -> Any:
        return jsonify(notes=[shown(store[k]) for k in sorted(store)], count=len(store))

    @bp.get("/export")
    @operation(response=list[NoteOut])
    def export_notes() -> Any:
        return jsonify([shown(store[k]) for k in sorted(store)])

    @bp.route("/<int:note_id>/pin", methods=["POST", "DELETE"])
    @operation(response=NoteOut)
    def pin_note(note_id: int) -> Any:
        note = one(note_id)
        note["pinned"] = request.method == "POST"
        return jsonify(shown(note))

    return bp


def notes_app() -> Flask:
    app = Flask("notes")
    app.config.update(TESTING=True, LOCKGATE_VENDOR="notes")
    Versioning(app, versions=notes_versions(), head=notes_head(), clock=clock)
    return app


@pytest.fixture
def notes() -> Any:
    return notes_app().test_client()


UP_FROM = {"1": ["up2", "up3a", "up3b", "up4"], "2": ["up3a", "up3b", "up4"], "3": ["up4"], "4": []}
DOWN_TO = {
    "1": ["down4", "down3b", "down3a", "down2"],
    "2": ["down4", "down3b", "down3a"],
    "3": ["down4"],
    "4": [],
}


def note_in(label: str, text: str, level: int = 2) -> dict[str, Any]:
    name = {"1": "headline", "2": "subject", "3": "subject", "4": "title"}[label]
    return {name: text, "level": str(level) if label in ("1", "2") else level, "trail": ["client"]}


def note_out(
    label: str, note_id: int, text: str, trail: list[str], level: int = 2
) -> dict[str, Any]:
    """A note as version ``label`` shows it."""
    if label == "1":
        return {
            "id": note_id,
            "headline": text,
            "level": str(level),
            "legacy": "kept",
            "trail": trail,
        }
    if label == "2":
        return {
            "id": note_id,
            "subject": text,
            "level": str(level),
            "legacy": "kept",
            "trail": trail,
        }
    if label == "3":
        shown = {"id": note_id, "subject": text, "level": level, "pinned": False}
        return {**shown, "legacy": "kept", "trail": trail}
    return {"id": note_id, "title": text, "level": level, "pinned": False, "trail": trail}


@pytest.mark.parametrize("label", ["1", "2", "3", "4"])
def test_notes_migrations_compose_in_order_both_ways(notes: Any, label: str) -> None:
    response = notes.post(f"/api/v{label}/notes", json=note_in(label, "Buy milk"))
    assert response.status_code == 201, response.get_data(as_text=True)
    trail = ["client", *UP_FROM[label], "head", *DOWN_TO[label]]
    assert response.get_json() == note_out(label, 1, "Buy milk", trail)
    assert response.headers["Location"] == f"/api/v{label}/notes/1"


def test_notes_read_back_in_every_version(notes: Any) -> None:
    notes.post("/api/v1/notes", json=note_in("1", "From v1", level=3))
    notes.post("/api/v4/notes", json=note_in("4", "From v4", level=5))
    stored = {1: ["client", *UP_FROM["1"]], 2: ["client"]}
    for label in ("1", "2", "3", "4"):
        for note_id, text, level in ((1, "From v1", 3), (2, "From v4", 5)):
            response = notes.get(f"/api/v{label}/notes/{note_id}")
            assert response.status_code == 200
            trail = [*stored[note_id], "head", *DOWN_TO[label]]
            assert response.get_json() == note_out(label, note_id, text, trail, level), label
        # the list envelope: every note migrated, in order, the count untouched
        page = notes.get(f"/api/v{label}/notes").get_json()
        assert page == {
            "notes": [
                note_out(label, 1, "From v1", [*stored[1], "head", *DOWN_TO[label]], 3),
                note_out(label, 2, "From v4", [*stored[2], "head", *DOWN_TO[label]], 5),
            ],
            "count": 2,
        }


def test_notes_top_level_list_response_is_migrated_item_by_item(notes: Any) -> None:
    notes.post("/api/v4/notes", json=note_in("4", "One"))
    notes.post("/api/v4/notes", json=note_in("4", "Two"))
    for label in ("1", "2", "3"):
        response = notes.get(f"/api/v{label}/notes/export")
        assert response.status_code == 200, label
        assert response.get_json() == [
            note_out(label, 1, "One", ["client", "head", *DOWN_TO[label]]),
            note_out(label, 2, "Two", ["client", "head", *DOWN_TO[label]]),
        ]


def test_notes_the_pin_endpoint_pinned_field_and_levels(notes: Any) -> None:
    notes.post("/api/v2/notes", json=note_in("2", "Pin me", level=4))
    pinned = notes.post("/api/v3/notes/1/pin")
    assert pinned.status_code == 200
    assert pinned.get_json()["pinned"] is True
    assert pinned.get_json()["level"] == 4
    unpinned = notes.delete("/api/v4/notes/1/pin")
    assert unpinned.status_code == 200
    assert unpinned.get_json()["pinned"] is False
    # v2 never shows pinned, and shows level as a string
    shown = notes.get("/api/v2/notes/1").get_json()
    assert "pinned" not in shown
    assert shown["level"] == "4"


def test_notes_endpoints_added_and_removed_along_the_chain(notes: Any) -> None:
    notes.post("/api/v4/notes", json=note_in("4", "Here"))
    served = {
        ("GET", "/notes/legacy"): {"1"},
        ("GET", "/notes/export"): {"1", "2", "3"},
        ("POST", "/notes/1/pin"): {"3", "4"},
        ("DELETE", "/notes/1/pin"): {"4"},
    }
    for (method, path), labels in served.items():
        for label in ("1", "2", "3", "4"):
            response = notes.open(f"/api/v{label}{path}", method=method)
            if label in labels:
                assert response.status_code == 200, (method, path, label)
            else:
                found = problem(response, 404, "UnsupportedApiVersion")
                assert set(found["versions"]) == labels, (method, path, label)


def test_notes_validation_names_each_versions_fields(notes: Any) -> None:
    assert error_fields(notes.post("/api/v1/notes", json={"title": "x"})) == {"headline", "title"}
    assert error_fields(notes.post("/api/v1/notes", json={"headline": ""})) == {"headline"}
    # v1 and v2 had level as a string: a number is refused there
    assert error_fields(notes.post("/api/v2/notes", json={"subject": "x", "level": 3})) == {"level"}
    assert error_fields(notes.post("/api/v2/notes", json={"headline": "x"})) == {
        "subject",
        "headline",
    }
    assert error_fields(notes.post("/api/v3/notes", json={"title": "x"})) == {"subject", "title"}
    assert error_fields(notes.post("/api/v3/notes", json={"subject": "x", "level": 9})) == {"level"}
    assert error_fields(notes.post("/api/v4/notes", json={"subject": "x"})) == {"title", "subject"}
    assert error_fields(notes.post("/api/v4/notes", json={"title": "x", "level": "high"})) == {
        "level"
    }
    assert notes.get("/api/v4/notes").get_json() == {"notes": [], "count": 0}


def test_notes_openapi_of_each_version(notes: Any) -> None:
    documents = {label: openapi(notes, label) for label in ("1", "2", "3", "4")}
    assert routes_of(documents["1"], "1") == {
        "/notes": {"get", "post"},
        "/notes/{note_id}": {"get"},
        "/notes/legacy": {"get"},
        "/notes/export": {"get"},
    }
    assert routes_of(documents["2"], "2") == {
        "/notes": {"get", "post"},
        "/notes/{note_id}": {"get"},
        "/notes/export": {"get"},
    }
    assert routes_of(documents["3"], "3") == {
        "/notes": {"get", "post"},
        "/notes/{note_id}": {"get"},
        "/notes/export": {"get"},
        "/notes/{note_id}/pin": {"post"},
    }
    assert routes_of(documents["4"], "4") == {
        "/notes": {"get", "post"},
        "/notes/{note_id}": {"get"},
        "/notes/{note_id}/pin": {"post", "delete"},
    }
    out = {
        "1": {"id", "headline", "level", "legacy", "trail"},
        "2": {"id", "subject", "level", "legacy", "trail"},
        "3": {"id", "subject", "level", "pinned", "legacy", "trail"},
        "4": {"id", "title", "level", "pinned", "trail"},
    }
    out_required = {
        "1": {"id", "headline", "level", "trail"},
        "2": {"id", "subject", "level", "trail"},
        "3": {"id", "subject", "level", "trail"},
        "4": {"id", "title", "level", "trail"},
    }
    into = {
        "1": {"headline", "level", "trail"},
        "2": {"subject", "level", "trail"},
        "3": {"subject", "level", "trail"},
        "4": {"title", "level", "trail"},
    }
    level_type = {"1": "string", "2": "string", "3": "integer", "4": "integer"}
    for label, document in documents.items():
        assert properties(document, "NoteOut") == out[label], label
        assert required(document, "NoteOut") == out_required[label], label
        assert properties(document, "NoteInInput") == into[label], label
        assert required(document, "NoteInInput") == into[label] - {"level", "trail"}, label
        assert properties(document, "NotePage") == {"notes", "count"}
        assert schema(document, "NoteOut")["properties"]["level"]["type"] == level_type[label]
        assert schema(document, "NoteInInput")["properties"]["level"]["type"] == level_type[label]
    # a removed field comes back with its type and default in the older versions
    legacy = schema(documents["3"], "NoteOut")["properties"]["legacy"]
    assert legacy["type"] == "string" and legacy["default"] == ""
    assert schema(documents["2"], "NoteInInput")["properties"]["level"]["default"] == "1"


def test_notes_changelog_json(notes: Any) -> None:
    versions = notes.get("/api/changelog").get_json()["versions"]
    assert [v["version"] for v in versions] == ["4", "3", "2", "1"]
    assert [v["status"] for v in versions] == ["current", "current", "deprecated", "deprecated"]
    changes = {v["version"]: v["changes"] for v in versions}
    assert [c["name"] for c in changes["4"]] == ["ToTitle"]
    assert [c["name"] for c in changes["3"]] == ["Pinning", "LevelAsNumber"]
    assert [c["name"] for c in changes["2"]] == ["ToSubject"]
    assert changes["1"] == []
    by_name = {c["name"]: c for v in versions for c in v["changes"]}
    for change in (ToSubject, Pinning, LevelAsNumber, ToTitle):
        assert by_name[change.__name__]["description"] == change.__doc__
    assert {name: c["breaking"] for name, c in by_name.items()} == {
        "ToTitle": True,
        "Pinning": False,  # a response field and an endpoint added: compatible
        "LevelAsNumber": True,
        "ToSubject": True,
    }
    fields = {
        (name, f["schema"], f["field"]): f["breaking"]
        for name, c in by_name.items()
        for f in c["fields"]
    }
    assert fields == {
        ("ToTitle", "NoteIn", "title"): True,
        ("ToTitle", "NoteOut", "title"): True,
        ("ToTitle", "NoteOut", "legacy"): True,
        ("Pinning", "NoteOut", "pinned"): False,
        ("LevelAsNumber", "NoteIn", "level"): True,
        ("LevelAsNumber", "NoteOut", "level"): True,
        ("ToSubject", "NoteIn", "subject"): True,
        ("ToSubject", "NoteOut", "subject"): True,
    }
    endpoints = {
        (name, e["path"], tuple(e["methods"] or ())): e["breaking"]
        for name, c in by_name.items()
        for e in c["endpoints"]
    }
    assert endpoints == {
        ("ToSubject", "/notes/legacy", ("GET",)): True,
        ("Pinning", "/notes/{note_id}/pin", ()): False,
        ("ToTitle", "/notes/export", ("GET",)): True,
        ("ToTitle", "/notes/{note_id}/pin", ("DELETE",)): False,
    }


def test_notes_html_pages(notes: Any) -> None:
    page = notes.get("/docs/changelog")
    assert page.status_code == 200 and page.mimetype == "text/html"
    for name in ("ToSubject", "Pinning", "LevelAsNumber", "ToTitle"):
        assert name in page.get_data(as_text=True)
    guide = notes.get("/docs/migrations/v1-to-v4")
    assert guide.status_code == 200 and guide.mimetype == "text/html"
    text = guide.get_data(as_text=True)
    positions = [text.index(name) for name in ("ToSubject", "Pinning", "LevelAsNumber", "ToTitle")]
    assert positions == sorted(positions)  # oldest change first
    guide = notes.get("/docs/migrations/v2-to-v3")
    assert guide.status_code == 200 and guide.mimetype == "text/html"
    text = guide.get_data(as_text=True)
    assert "Pinning" in text and "LevelAsNumber" in text
    assert "ToSubject" not in text and "ToTitle" not in text


def test_notes_lifecycle_headers_of_old_versions(notes: Any) -> None:
    notes.post("/api/v4/notes", json=note_in("4", "Here"))
    v1 = notes.get("/api/v1/notes/1")
    assert v1.headers["API-Version"] == "1"
    assert v1.headers["API-Supported-Versions"] == "3, 4"
    assert v1.headers["API-Deprecated-Versions"] == "1, 2"
    assert v1.headers["Deprecation"] == "@1772323200"  # 2026-03-01T00:00:00Z
    assert v1.headers["Sunset"] == "Tue, 01 Jun 2027 00:00:00 GMT"
    assert '</api/v4/notes/1>; rel="successor-version"' in links(v1)
    v2 = notes.get("/api/v2/notes/1")
    assert v2.headers["Deprecation"] == "@1788220800"  # 2026-09-01T00:00:00Z
    assert "Sunset" not in v2.headers
    v3 = notes.get("/api/v3/notes/1")
    assert v3.headers["API-Version"] == "3"
    assert "Deprecation" not in v3.headers


def test_notes_four_readers_give_the_same_migrated_bodies(notes: Any) -> None:
    def readers_(label: str, path: str) -> list[tuple[str, dict[str, str]]]:
        joiner = "&" if "?" in path else "?"
        return [
            (f"/api/v{label}{path}", {}),
            (f"/api{path}", {"API-Version": label}),
            (f"/api{path}", {"Accept": f"application/vnd.notes.v{label}+json"}),
            (f"/api{path}{joiner}version={label}", {}),
        ]

    bodies = []
    for url, headers in readers_("1", "/notes"):
        response = notes.post(url, json=note_in("1", "Same"), headers=headers)
        assert response.status_code == 201, (url, headers, response.get_data(as_text=True))
        bodies.append(body_of(response))
    trail = ["client", *UP_FROM["1"], "head", *DOWN_TO["1"]]
    assert bodies == [note_out("1", n, "Same", trail) for n in range(1, 5)]
    for url, headers in readers_("2", "/notes/3"):
        response = notes.get(url, headers=headers)
        assert response.status_code == 200, (url, headers)
        assert body_of(response) == note_out(
            "2", 3, "Same", ["client", *UP_FROM["1"], "head", *DOWN_TO["2"]]
        )


# --------------------------------------------------------------------------------------
# things: query parameters and headers migrated up
# --------------------------------------------------------------------------------------


class ThingQuery(BaseModel):
    page_size: int = Field(10, ge=1, le=50)
    order: str = "id"


class ThingIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1)
    tags: list[str] = []


class ThingOut(BaseModel):
    name: str
    tags: list[str]
    account: str | None


class Echo(BaseModel):
    page_size: int
    order: str
    account: str | None
    agent: str | None


class PerPage(VersionChange):
    """`per_page` became `page_size`; `order=-id` became `order=id:desc`; things have `tags`."""

    schemas = [
        field(ThingQuery, "page_size").renamed(from_="per_page"),
        field(ThingIn, "tags").added(),
        field(ThingOut, "tags").added(),
    ]

    @migrate_request("/things", methods=["GET"])
    def query(req: RequestInfo) -> None:
        if "per_page" in req.query:
            req.query["page_size"] = req.query.pop("per_page")
        if req.query.get("order", "").startswith("-"):
            req.query["order"] = req.query["order"][1:] + ":desc"

    @migrate_request(ThingIn)
    def default_tags(req: RequestInfo) -> None:
        req.body["tags"] = ["from-v1"]

    @migrate_response(ThingOut)
    def drop_tags(res: ResponseInfo) -> None:
        res.body.pop("tags")


class AccountHeader(VersionChange):
    """The `X-Tenant` header is called `X-Account`."""

    @migrate_request("/things")
    def header(req: RequestInfo) -> None:
        tenant = req.headers.get("X-Tenant")
        if tenant is not None:
            del req.headers["X-Tenant"]
            req.headers["X-Account"] = tenant


class QuietNote(VersionChange):
    """Old clients get a hint header on listings (nothing they must change)."""

    breaking = False

    @migrate_response("/things", methods=["GET"])
    def hint(res: ResponseInfo) -> None:
        res.headers["X-Hint"] = "upgrade"


def things_app() -> Flask:
    bp = Blueprint("things", __name__, url_prefix="/things")

    @bp.get("")
    @operation(query=ThingQuery, response=Echo)
    def list_things() -> Any:
        from pydantic import ValidationError

        try:
            query = ThingQuery.model_validate(request.args.to_dict())
        except ValidationError as error:
            raise query_problem(error) from None
        return jsonify(
            page_size=query.page_size,
            order=query.order,
            account=request.headers.get("X-Account"),
            agent=request.headers.get("X-Tenant"),
        )

    @bp.post("")
    @operation(request=ThingIn, response=ThingOut, status=201)
    def create_thing() -> Any:
        body = read_json(ThingIn)
        return jsonify(
            name=body.name, tags=body.tags, account=request.headers.get("X-Account")
        ), 201

    app = Flask("things")
    app.config.update(TESTING=True, LOCKGATE_VENDOR="things")
    versions = [
        Version("1", deprecated="2026-01-01", successor="3"),
        Version("2", changes=[PerPage]),
        Version("3", changes=[AccountHeader, QuietNote]),
    ]
    Versioning(app, versions=versions, head=bp, clock=clock)
    return app


@pytest.fixture
def things() -> Any:
    return things_app().test_client()


def test_things_query_parameters_are_migrated_up(things: Any) -> None:
    v1 = things.get("/api/v1/things?per_page=5&order=-id")
    assert v1.status_code == 200, v1.get_data(as_text=True)
    assert v1.get_json() == {"page_size": 5, "order": "id:desc", "account": None, "agent": None}
    v2 = things.get("/api/v2/things?page_size=7&order=-id")
    assert v2.get_json() == {"page_size": 7, "order": "-id", "account": None, "agent": None}
    v3 = things.get("/api/v3/things?page_size=8")
    assert v3.get_json() == {"page_size": 8, "order": "id", "account": None, "agent": None}


def test_things_query_is_validated_with_each_versions_names(things: Any) -> None:
    response = things.get("/api/v1/things?per_page=500")
    found = problem(response, 400, "InvalidQuery")
    assert {error["field"] for error in found["errors"]} == {"per_page"}
    found = problem(things.get("/api/v2/things?page_size=0"), 400, "InvalidQuery")
    assert {error["field"] for error in found["errors"]} == {"page_size"}


def test_things_headers_are_migrated_up(things: Any) -> None:
    for label in ("1", "2"):
        response = things.get(f"/api/v{label}/things", headers={"X-Tenant": "acme"})
        assert response.status_code == 200
        # the head reads X-Account, and no longer sees X-Tenant
        assert response.get_json()["account"] == "acme", label
        assert response.get_json()["agent"] is None, label
    head = things.get("/api/v3/things", headers={"X-Tenant": "acme"})
    assert head.get_json()["account"] is None
    assert head.get_json()["agent"] == "acme"


def test_things_response_header_migration_by_path_only_for_old_versions(things: Any) -> None:
    assert things.get("/api/v1/things").headers.get("X-Hint") == "upgrade"
    assert things.get("/api/v2/things").headers.get("X-Hint") == "upgrade"
    assert "X-Hint" not in things.get("/api/v3/things").headers
    # not on POST: the migration names GET
    assert "X-Hint" not in things.post("/api/v1/things", json={"name": "a"}).headers


def test_things_header_migration_on_a_request_with_a_body(things: Any) -> None:
    response = things.post(
        "/api/v2/things", json={"name": "box", "tags": ["a"]}, headers={"X-Tenant": "acme"}
    )
    assert response.status_code == 201, response.get_data(as_text=True)
    assert response.get_json() == {"name": "box", "tags": ["a"], "account": "acme"}


def test_things_body_and_header_migrations_in_one_request(things: Any) -> None:
    # v1 -> v2 adds tags to the body (it grows); v2 -> v3 renames the header
    response = things.post("/api/v1/things", json={"name": "box"}, headers={"X-Tenant": "acme"})
    assert response.status_code == 201, response.get_data(as_text=True)
    assert response.get_json() == {"name": "box", "account": "acme"}


THINGS_READERS = [
    ("/api/v1/things", {}),
    ("/api/things", {"API-Version": "1"}),
    ("/api/things", {"Accept": "application/vnd.things.v1+json"}),
    ("/api/things?version=1", {}),
]


def test_things_four_readers_give_the_same_migrated_headers(things: Any) -> None:
    for url, headers in THINGS_READERS:
        response = things.get(url, headers={**headers, "X-Tenant": "acme"})
        assert response.status_code == 200, (url, headers, response.get_data(as_text=True))
        assert body_of(response) == {
            "page_size": 10,
            "order": "id",
            "account": "acme",
            "agent": None,
        }, (url, headers)
        assert response.headers["API-Version"] == "1"
        assert response.headers["X-Hint"] == "upgrade"
    for url, headers in THINGS_READERS:
        response = things.post(url, json={"name": "box"}, headers={**headers, "X-Tenant": "acme"})
        assert response.status_code == 201, (url, headers, response.get_data(as_text=True))
        assert body_of(response) == {"name": "box", "account": "acme"}, (url, headers)


def test_things_four_readers_give_the_same_migrated_query(things: Any) -> None:
    for url, headers in THINGS_READERS:
        joiner = "&" if "?" in url else "?"
        response = things.get(f"{url}{joiner}per_page=3&order=-id", headers=headers)
        assert response.status_code == 200, (url, headers, response.get_data(as_text=True))
        assert body_of(response) == {
            "page_size": 3,
            "order": "id:desc",
            "account": None,
            "agent": None,
        }, (url, headers)


def test_things_openapi_query_parameters_per_version(things: Any) -> None:
    for label, names in (
        ("1", {"per_page", "order"}),
        ("2", {"page_size", "order"}),
        ("3", {"page_size", "order"}),
    ):
        document = openapi(things, label)
        get = document["paths"][f"/api/v{label}/things"]["get"]
        query = {p["name"] for p in get["parameters"] if p["in"] == "query"}
        assert query == names, label
    v1 = openapi(things, "1")
    assert properties(v1, "ThingInInput") == {"name"}
    assert properties(v1, "ThingOut") == {"name", "account"}
    assert properties(openapi(things, "2"), "ThingInInput") == {"name", "tags"}


def test_things_changelog_breaking_flags_of_migration_only_changes(things: Any) -> None:
    versions = things.get("/api/changelog").get_json()["versions"]
    by_name = {c["name"]: c for v in versions for c in v["changes"]}
    # migrations without instructions change behaviour: breaking, unless the change says not
    assert by_name["AccountHeader"]["breaking"] is True
    assert by_name["AccountHeader"]["fields"] == [] and by_name["AccountHeader"]["endpoints"] == []
    assert by_name["QuietNote"]["breaking"] is False
    assert by_name["PerPage"]["breaking"] is True
    assert by_name["AccountHeader"]["description"] == "The `X-Tenant` header is called `X-Account`."


# --------------------------------------------------------------------------------------
# jobs: status codes and headers by path; errors=True on a problem+json body
# --------------------------------------------------------------------------------------


class JobIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    task: str = Field(min_length=1)


class JobOut(BaseModel):
    id: int
    task: str
    state: str


class AsyncJobs(VersionChange):
    """Creating a job answers 202 with `X-Job-State`; `status` became `state`;
    an unknown job is `JobNotFound`."""

    schemas = [field(JobOut, "state").renamed(from_="status")]

    @migrate_response("/jobs", methods=["POST"])
    def created(res: ResponseInfo) -> None:
        res.status_code = 201
        res.headers["X-Status"] = res.headers.pop("X-Job-State")
        res.body["status"] = res.body.pop("state")

    @migrate_response("/jobs/<int:job_id>", methods=["GET"], errors=True)
    def shown(res: ResponseInfo) -> None:
        if res.status_code == 404:
            res.body["code"] = "NoSuchJob"
            res.body["status"] = res.status_code = 410
            res.headers["X-Migrated"] = "yes"
        else:
            res.body["status"] = res.body.pop("state")

    @migrate_response("/jobs/<int:job_id>", methods=["DELETE"])
    def deleted(res: ResponseInfo) -> None:
        res.body["status"] = res.body.pop("state")
        res.headers["X-Touched"] = "yes"


def jobs_app() -> Flask:
    bp = Blueprint("jobs", __name__, url_prefix="/jobs")
    store: dict[int, dict[str, Any]] = {}

    def one(job_id: int) -> dict[str, Any]:
        if job_id not in store:
            raise Problem(404, f"there is no job {job_id}", code="JobNotFound")
        return store[job_id]

    @bp.post("")
    @operation(request=JobIn, response=JobOut, status=202)
    def create_job() -> Any:
        body = read_json(JobIn)
        job_id = len(store) + 1
        store[job_id] = {"id": job_id, "task": body.task, "state": "queued"}
        headers = {"X-Job-State": "queued", "Location": url_for("jobs.show_job", job_id=job_id)}
        return jsonify(store[job_id]), 202, headers

    @bp.get("/<int:job_id>")
    @operation(response=JobOut, responses={404: "No such job"})
    def show_job(job_id: int) -> Any:
        return jsonify(one(job_id))

    @bp.delete("/<int:job_id>")
    @operation(response=JobOut, responses={404: "No such job"})
    def delete_job(job_id: int) -> Any:
        job = one(job_id)
        del store[job_id]
        return jsonify({**job, "state": "deleted"})

    app = Flask("jobs")
    app.config.update(TESTING=True)
    versions = [
        Version("1", deprecated="2026-01-01", successor="2"),
        Version("2", changes=[AsyncJobs]),
    ]
    Versioning(app, versions=versions, head=bp, clock=clock)
    return app


@pytest.fixture
def jobs() -> Any:
    return jobs_app().test_client()


def test_jobs_status_code_and_headers_migrated_by_path(jobs: Any) -> None:
    head = jobs.post("/api/v2/jobs", json={"task": "build"})
    assert head.status_code == 202
    assert head.headers["X-Job-State"] == "queued"
    assert "X-Status" not in head.headers
    assert head.get_json() == {"id": 1, "task": "build", "state": "queued"}

    old = jobs.post("/api/v1/jobs", json={"task": "test"})
    assert old.status_code == 201
    assert old.headers["X-Status"] == "queued"
    assert "X-Job-State" not in old.headers
    assert old.headers["Location"] == "/api/v1/jobs/2"
    assert old.get_json() == {"id": 2, "task": "test", "status": "queued"}
    assert old.headers["API-Version"] == "1"
    assert old.headers["Deprecation"] == "@1767225600"


def test_jobs_error_responses_pass_through_path_migrations_without_errors(jobs: Any) -> None:
    # the POST migration would make any answer a 201: a 422 is left alone
    invalid = jobs.post("/api/v1/jobs", json={"task": ""})
    assert error_fields(invalid) == {"task"}
    assert "X-Status" not in invalid.headers
    # the DELETE migration does not see the problem either
    missing = jobs.delete("/api/v1/jobs/9")
    found = problem(missing, 404, "JobNotFound")
    assert found["detail"] == "there is no job 9"
    assert "X-Touched" not in missing.headers
    deleted = jobs.post("/api/v1/jobs", json={"task": "x"})
    assert deleted.status_code == 201
    gone = jobs.delete("/api/v1/jobs/1")
    assert gone.status_code == 200
    assert gone.get_json() == {"id": 1, "task": "x", "status": "deleted"}
    assert gone.headers["X-Touched"] == "yes"


def test_jobs_errors_true_migrates_the_problem_body(jobs: Any) -> None:
    old = jobs.get("/api/v1/jobs/42")
    found = problem(old, 410, "NoSuchJob")
    assert found["detail"] == "there is no job 42"
    assert old.headers["X-Migrated"] == "yes"
    assert old.headers["API-Version"] == "1"
    head = jobs.get("/api/v2/jobs/42")
    problem(head, 404, "JobNotFound")
    assert "X-Migrated" not in head.headers
    # the same migration still handles successes
    jobs.post("/api/v2/jobs", json={"task": "build"})
    shown = jobs.get("/api/v1/jobs/1")
    assert shown.status_code == 200
    assert shown.get_json() == {"id": 1, "task": "build", "status": "queued"}


def test_jobs_openapi_and_changelog(jobs: Any) -> None:
    v1, v2 = openapi(jobs, "1"), openapi(jobs, "2")
    assert properties(v1, "JobOut") == {"id", "task", "status"}
    assert properties(v2, "JobOut") == {"id", "task", "state"}
    assert (
        routes_of(v1, "1")
        == routes_of(v2, "2")
        == {
            "/jobs": {"post"},
            "/jobs/{job_id}": {"get", "delete"},
        }
    )
    versions = jobs.get("/api/changelog").get_json()["versions"]
    assert [v["version"] for v in versions] == ["2", "1"]
    (change,) = versions[0]["changes"]
    assert change["name"] == "AsyncJobs"
    assert change["breaking"] is True
    assert change["description"] == (
        "Creating a job answers 202 with `X-Job-State`; `status` became `state`;\n"
        "an unknown job is `JobNotFound`."
    )
    assert jobs.get("/docs/migrations/v1-to-v2").status_code == 200
    assert "AsyncJobs" in jobs.get("/docs/migrations/v1-to-v2").get_data(as_text=True)


# --------------------------------------------------------------------------------------
# library: by-schema response migrations reach nested objects
# --------------------------------------------------------------------------------------


class Tag(BaseModel):
    slug: str
    color: str = "grey"


class Article(BaseModel):
    id: int
    tag: Tag
    maybe: Tag | None = None
    tags: list[Tag]
    tag_map: dict[str, Tag]


class Envelope(BaseModel):
    data: Article
    related: list[Article]
    index: dict[str, Article]


class TagSlug(VersionChange):
    """A tag's `label` became its `slug`."""

    schemas = [field(Tag, "slug").renamed(from_="label")]

    @migrate_response(Tag)
    def down(res: ResponseInfo) -> None:
        res.body["label"] = res.body.pop("slug")


class LabelsToTags(VersionChange):
    """An article's `labels` became its `tags`."""

    schemas = [field(Article, "tags").renamed(from_="labels")]

    @migrate_response(Article)
    def down(res: ResponseInfo) -> None:
        res.body["labels"] = res.body.pop("tags")


def article(article_id: int, maybe: bool) -> dict[str, Any]:
    return {
        "id": article_id,
        "tag": {"slug": f"t{article_id}", "color": "red"},
        "maybe": {"slug": f"m{article_id}", "color": "blue"} if maybe else None,
        "tags": [
            {"slug": f"a{article_id}", "color": "grey"},
            {"slug": f"b{article_id}", "color": "grey"},
        ],
        "tag_map": {"main": {"slug": f"k{article_id}", "color": "green"}},
    }


def library_app() -> Flask:
    bp = Blueprint("library", __name__)

    @bp.get("/articles/<int:article_id>")
    @operation(response=Envelope)
    def show_article(article_id: int) -> Any:
        return jsonify(
            data=article(article_id, True),
            related=[article(article_id + 1, False), article(article_id + 2, True)],
            index={"next": article(article_id + 3, False)},
        )

    @bp.get("/tags")
    @operation(response=list[Tag])
    def list_tags() -> Any:
        return jsonify([{"slug": "x", "color": "grey"}, {"slug": "y", "color": "red"}])

    @bp.get("/tag-map")
    @operation(response=dict[str, Tag])
    def tag_map() -> Any:
        return jsonify(
            {"one": {"slug": "x", "color": "grey"}, "two": {"slug": "y", "color": "red"}}
        )

    @bp.get("/tags/first")
    @operation(response=Tag)
    def first_tag() -> Any:
        return jsonify(slug="x", color="grey")

    app = Flask("library")
    app.config.update(TESTING=True)
    versions = [
        Version("1", deprecated="2026-01-01", successor="3"),
        Version("2", changes=[TagSlug]),
        Version("3", changes=[LabelsToTags]),
    ]
    Versioning(app, versions=versions, head=bp, clock=clock)
    return app


@pytest.fixture
def library() -> Any:
    return library_app().test_client()


def old_tag(tag: dict[str, Any] | None) -> dict[str, Any] | None:
    return None if tag is None else {"label": tag["slug"], "color": tag["color"]}


def article_in(label: str, body: dict[str, Any]) -> dict[str, Any]:
    if label == "3":
        return body
    shown = dict(body)
    shown["labels"] = shown.pop("tags")
    if label == "1":
        shown["tag"] = old_tag(shown["tag"])
        shown["maybe"] = old_tag(shown["maybe"])
        shown["labels"] = [old_tag(tag) for tag in shown["labels"]]
        shown["tag_map"] = {key: old_tag(tag) for key, tag in shown["tag_map"].items()}
    return shown


@pytest.mark.parametrize("label", ["1", "2", "3"])
def test_library_nested_objects_in_envelope_lists_and_dicts(library: Any, label: str) -> None:
    response = library.get(f"/api/v{label}/articles/1")
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.get_json() == {
        "data": article_in(label, article(1, True)),
        "related": [article_in(label, article(2, False)), article_in(label, article(3, True))],
        "index": {"next": article_in(label, article(4, False))},
    }


def test_library_top_level_list_dict_and_model(library: Any) -> None:
    assert library.get("/api/v1/tags").get_json() == [
        {"label": "x", "color": "grey"},
        {"label": "y", "color": "red"},
    ]
    assert library.get("/api/v1/tag-map").get_json() == {
        "one": {"label": "x", "color": "grey"},
        "two": {"label": "y", "color": "red"},
    }
    assert library.get("/api/v1/tags/first").get_json() == {"label": "x", "color": "grey"}
    for label in ("2", "3"):
        assert library.get(f"/api/v{label}/tags/first").get_json() == {"slug": "x", "color": "grey"}
        assert library.get(f"/api/v{label}/tags").get_json()[0] == {"slug": "x", "color": "grey"}


def test_library_openapi_of_each_version(library: Any) -> None:
    tag = {"1": {"label", "color"}, "2": {"slug", "color"}, "3": {"slug", "color"}}
    art = {
        "1": {"id", "tag", "maybe", "labels", "tag_map"},
        "2": {"id", "tag", "maybe", "labels", "tag_map"},
        "3": {"id", "tag", "maybe", "tags", "tag_map"},
    }
    for label in ("1", "2", "3"):
        document = openapi(library, label)
        assert properties(document, "Tag") == tag[label], label
        assert required(document, "Tag") == tag[label] - {"color"}, label
        assert properties(document, "Article") == art[label], label
        assert required(document, "Article") == art[label] - {"maybe"}, label
        assert properties(document, "Envelope") == {"data", "related", "index"}
        assert routes_of(document, label) == {
            "/articles/{article_id}": {"get"},
            "/tags": {"get"},
            "/tag-map": {"get"},
            "/tags/first": {"get"},
        }


# --------------------------------------------------------------------------------------
# Startup errors: a change that cannot be applied raises ConfigurationError, naming it
# --------------------------------------------------------------------------------------


class Orphan(BaseModel):
    """A model no route uses."""

    x: int


def build(versions: list[Version]) -> Flask:
    app = Flask("broken")
    app.config.update(TESTING=True)
    app.extensions["items"] = {}
    Versioning(app, versions=versions, head=changes_app.head_blueprint(), clock=clock)
    Runtime(app)
    return app


def two(change: type[VersionChange]) -> list[Version]:
    return [Version("1"), Version("2", changes=[change])]


def bad_renamed_missing() -> type[VersionChange]:
    class RenameMissing(VersionChange):
        """x"""

        schemas = [field(changes_app.ItemOut, "nickname").renamed(from_="nick")]

    return RenameMissing


def bad_added_missing() -> type[VersionChange]:
    class AddMissing(VersionChange):
        """x"""

        schemas = [field(changes_app.ItemOut, "nickname").added()]

    return AddMissing


def bad_retyped_missing() -> type[VersionChange]:
    class RetypeMissing(VersionChange):
        """x"""

        schemas = [field(changes_app.ItemIn, "nickname").retyped(from_=int)]

    return RetypeMissing


def bad_removed_present() -> type[VersionChange]:
    class RemoveStillThere(VersionChange):
        """x"""

        schemas = [field(changes_app.ItemOut, "email").removed(str)]

    return RemoveStillThere


def bad_rename_collides() -> type[VersionChange]:
    class RenameCollides(VersionChange):
        """x"""

        schemas = [field(changes_app.ItemOut, "full_name").renamed(from_="email")]

    return RenameCollides


def bad_orphan_field() -> type[VersionChange]:
    class OrphanField(VersionChange):
        """x"""

        schemas = [field(Orphan, "x").added()]

    return OrphanField


def bad_endpoint_path() -> type[VersionChange]:
    class NowherePath(VersionChange):
        """x"""

        endpoints = [endpoint("/nowhere", ["GET"]).removed()]

    return NowherePath


def bad_endpoint_added_path() -> type[VersionChange]:
    class NowhereAdded(VersionChange):
        """x"""

        endpoints = [endpoint("/items/<int:item_id>/nothing").added()]

    return NowhereAdded


def bad_endpoint_method() -> type[VersionChange]:
    class NoDelete(VersionChange):
        """x"""

        endpoints = [endpoint("/items", ["DELETE"]).removed()]

    return NoDelete


def bad_request_path() -> type[VersionChange]:
    class RequestNowhere(VersionChange):
        """x"""

        @migrate_request("/nowhere")
        def up(req: RequestInfo) -> None:
            pass

    return RequestNowhere


def bad_response_path() -> type[VersionChange]:
    class ResponseNowhere(VersionChange):
        """x"""

        @migrate_response("/items/{item_id}/nothing", methods=["GET"])
        def down(res: ResponseInfo) -> None:
            pass

    return ResponseNowhere


def bad_response_method() -> type[VersionChange]:
    class ResponseNoPut(VersionChange):
        """x"""

        @migrate_response("/items", methods=["PUT"])
        def down(res: ResponseInfo) -> None:
            pass

    return ResponseNoPut


def bad_response_orphan() -> type[VersionChange]:
    class ResponseOrphan(VersionChange):
        """x"""

        @migrate_response(Orphan)
        def down(res: ResponseInfo) -> None:
            pass

    return ResponseOrphan


def bad_request_orphan() -> type[VersionChange]:
    class RequestOrphan(VersionChange):
        """x"""

        @migrate_request(Orphan)
        def up(req: RequestInfo) -> None:
            pass

    return RequestOrphan


def bad_request_response_model() -> type[VersionChange]:
    class RequestOfResponseModel(VersionChange):
        """x"""

        @migrate_request(changes_app.ItemOut)
        def up(req: RequestInfo) -> None:
            pass

    return RequestOfResponseModel


@pytest.mark.parametrize(
    "make",
    [
        bad_renamed_missing,
        bad_added_missing,
        bad_retyped_missing,
        bad_removed_present,
        bad_rename_collides,
        bad_orphan_field,
        bad_endpoint_path,
        bad_endpoint_added_path,
        bad_endpoint_method,
        bad_request_path,
        bad_response_path,
        bad_response_method,
        bad_response_orphan,
        bad_request_orphan,
        bad_request_response_model,
    ],
)
def test_impossible_change_raises_at_construction_naming_it(
    make: Callable[[], type[VersionChange]],
) -> None:
    change = make()
    with pytest.raises(ConfigurationError) as raised:
        build(two(change))
    assert change.__name__ in str(raised.value)


def test_a_field_named_as_a_later_version_renamed_it_is_an_error() -> None:
    class Later(VersionChange):
        """`name` became `full_name`."""

        schemas = [field(changes_app.ItemOut, "full_name").renamed(from_="name")]

    class Earlier(VersionChange):
        """In v2 the field is `name`: `full_name` is no field of v2's ItemOut."""

        schemas = [field(changes_app.ItemOut, "full_name").renamed(from_="fn")]

    with pytest.raises(ConfigurationError) as raised:
        build([Version("1"), Version("2", changes=[Earlier]), Version("3", changes=[Later])])
    assert "Earlier" in str(raised.value)


def good_change() -> type[VersionChange]:
    class Fine(VersionChange):
        """`name` became `full_name`."""

        schemas = [field(changes_app.ItemOut, "full_name").renamed(from_="name")]

        @migrate_response(changes_app.ItemOut)
        def down(res: ResponseInfo) -> None:
            res.body["name"] = res.body.pop("full_name")

    return Fine


def test_a_good_change_builds_and_serves() -> None:
    change = good_change()
    client = build(two(change)).test_client()
    client.post("/api/v2/items", json={"full_name": "Ada", "email": "a@example.com"})
    assert client.get("/api/v1/items/1").get_json()["name"] == "Ada"


def test_changes_on_the_oldest_version_are_an_error() -> None:
    change = good_change()
    with pytest.raises(ConfigurationError) as raised:
        build([Version("1", changes=[change]), Version("2")])
    assert change.__name__ in str(raised.value)
    # the only version is the oldest too
    with pytest.raises(ConfigurationError) as raised:
        build([Version("1", changes=[change])])
    assert change.__name__ in str(raised.value)


def test_a_change_listed_twice_is_an_error() -> None:
    change = good_change()
    with pytest.raises(ConfigurationError) as raised:
        build([Version("1"), Version("2", changes=[change, change])])
    assert change.__name__ in str(raised.value)
    with pytest.raises(ConfigurationError) as raised:
        build([Version("1"), Version("2", changes=[change]), Version("3", changes=[change])])
    assert change.__name__ in str(raised.value)


def test_changes_without_a_head_are_an_error() -> None:
    app = Flask("headless")
    with pytest.raises(ConfigurationError):
        Versioning(app, versions=two(good_change()), clock=clock)


def test_startup_errors_come_before_any_request() -> None:
    """The error is raised by Versioning(...) itself: no app is left half set up
    that would fail on its first request instead."""
    change = bad_endpoint_path()
    app = Flask("broken")
    with pytest.raises(ConfigurationError, match=re.escape(change.__name__)):
        Versioning(
            app,
            versions=[Version("2", changes=[change]), Version("1")],
            head=changes_app.head_blueprint(),
            clock=clock,
        )
