"""Classifying what changed between two OpenAPI documents of one version."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from flask import Blueprint, Flask
from pydantic import BaseModel

from lockgate import Version, Versioning, operation
from lockgate.openapi.diff import Difference, diff_documents, format_differences, has_breaking
from tests.conftest import NOW, Clock

USERS = "/api/v1/users"
POST = f"POST {USERS}"
STRING = {"type": "string"}
INTEGER = {"type": "integer"}
PROBLEM = {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}


def obj(*required: str, extra: Any = None, **properties: Any) -> dict[str, Any]:
    """An object schema with ``properties``, the names in ``required`` required."""
    schema: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        schema["required"] = list(required)
    if extra is not None:
        schema["additionalProperties"] = extra
    return schema


def api(
    request: Any = None,
    response: Any = None,
    schemas: dict[str, Any] | None = None,
    **changes: Any,
) -> dict[str, Any]:
    """A document with ``POST /api/v1/users`` (body in, 201 out) and ``GET /api/v1/users``.

    ``changes`` replace keys of the POST operation; a ``None`` value removes one.
    """
    post: dict[str, Any] = {
        "operationId": "create_user",
        "summary": "Create a user",
        "tags": ["users"],
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": request or obj("name", name=STRING)}},
        },
        "responses": {
            "201": {
                "description": "Created",
                "content": {
                    "application/json": {
                        "schema": response or obj("id", "name", id=INTEGER, name=STRING)
                    }
                },
            },
            "default": {"description": "Error", "content": PROBLEM},
        },
    }
    for key, value in changes.items():
        if value is None:
            post.pop(key, None)
        else:
            post[key] = value
    listing = {"responses": {"200": {"description": "OK"}}}
    # A copy: tests edit the document, and the schemas above are shared constants.
    return copy.deepcopy(
        {
            "openapi": "3.1.0",
            "info": {"title": "users", "version": "1"},
            "paths": {USERS: {"summary": "Users", "post": post, "get": listing}},
            "components": {"schemas": {"Problem": obj("title", title=STRING), **(schemas or {})}},
        }
    )


def only(old: dict[str, Any], new: dict[str, Any]) -> Difference:
    differences = diff_documents(old, new)
    assert len(differences) == 1, differences
    return differences[0]


def expect(
    difference: Difference, kind: str, breaking: bool, location: str, field: str = ""
) -> None:
    """The exact kind and flag, and a message naming the operation and the field."""
    assert (difference.kind, difference.breaking) == (kind, breaking), difference
    assert (difference.operation, difference.location, difference.field) == (
        POST,
        location,
        field,
    )
    named = f"{location} field {field}" if field else location
    assert difference.message.startswith(f"{POST}: {named} "), difference.message


def test_identical_documents_have_no_differences() -> None:
    assert diff_documents(api(), api()) == []
    assert format_differences([]) == "no differences"


def test_descriptions_names_and_extensions_are_ignored() -> None:
    new = api(operationId="make_user", summary="Make", tags=["people"], deprecated=True)
    new["info"] = {"title": "renamed", "version": "1", "description": "new words"}
    new["x-lifecycle"] = {"status": "deprecated"}
    new["paths"][USERS]["summary"] = "All the users"
    new["paths"][USERS]["post"]["responses"]["201"]["description"] = "Made"
    body = new["paths"][USERS]["post"]["requestBody"]["content"]["application/json"]["schema"]
    body["properties"]["name"] |= {"title": "Name", "description": "d", "examples": ["x"]}
    body["x-internal"] = True
    assert diff_documents(api(), new) == []


def test_a_ref_equals_the_same_schema_inlined_and_component_names_do_not_matter() -> None:
    inlined = api()
    user = obj("id", "name", id=INTEGER, name=STRING)
    by_ref = api(response={"$ref": "#/components/schemas/UserOut"}, schemas={"UserOut": user})
    renamed = api(response={"$ref": "#/components/schemas/User"}, schemas={"User": user})
    assert diff_documents(inlined, by_ref) == []
    assert diff_documents(by_ref, inlined) == []
    assert diff_documents(by_ref, renamed) == []


def test_refs_resolve_in_their_own_document() -> None:
    old = api(
        response={"$ref": "#/components/schemas/UserOut"},
        schemas={"UserOut": obj("id", "name", id=INTEGER, name=STRING)},
    )
    new = api(
        response={"$ref": "#/components/schemas/UserOut"},
        schemas={"UserOut": obj("id", id=INTEGER)},
    )
    expect(only(old, new), "response-field-removed", True, "response 201", "name")


def test_operations_removed_and_added() -> None:
    new = api()
    del new["paths"][USERS]["post"]
    new["paths"]["/api/v1/orders"] = {"get": {"responses": {"200": {"description": "OK"}}}}
    added, removed = diff_documents(api(), new)
    assert (removed.kind, removed.breaking, removed.operation) == ("operation-removed", True, POST)
    assert removed.message == f"{POST}: operation was removed"
    assert (added.kind, added.breaking) == ("operation-added", False)
    assert added.message == "GET /api/v1/orders: operation was added"


# Request bodies: a new server must accept every body the old one did.
NAME_NICK = obj("name", name=STRING, nick=STRING)
CLOSED = obj("name", extra=False, name=STRING, nick=STRING)
REQUEST_CASES = [
    # old, new, kind, breaking, field
    (
        obj("name", name=STRING),
        obj("name", "email", name=STRING, email=STRING),
        "required-request-field-added",
        True,
        "email",
    ),
    (
        obj("name", name=STRING),
        NAME_NICK,
        "optional-request-field-added",
        False,
        "nick",
    ),
    (
        NAME_NICK,
        obj("name", "nick", name=STRING, nick=STRING),
        "request-field-made-required",
        True,
        "nick",
    ),
    (NAME_NICK, obj(name=STRING, nick=STRING), "request-field-made-optional", False, "name"),
    (NAME_NICK, obj("name", name=STRING), "request-field-removed", False, "nick"),
    (CLOSED, obj("name", extra=False, name=STRING), "request-field-removed", True, "nick"),
    (
        obj(nick={"type": ["string", "null"]}),
        obj(nick=STRING),
        "type-narrowed",
        True,
        "nick",
    ),
    (
        obj(nick={"anyOf": [STRING, {"type": "null"}], "default": None}),
        obj(nick=STRING),
        "type-narrowed",
        True,
        "nick",
    ),
    (obj(n={"type": ["integer", "string"]}), obj(n=STRING), "type-narrowed", True, "n"),
    (obj(n={"type": "number"}), obj(n=INTEGER), "type-narrowed", True, "n"),
    (obj(n={}), obj(n=STRING), "type-narrowed", True, "n"),
    (obj(n=STRING), obj(n=INTEGER), "type-changed", True, "n"),
    (obj(n=STRING), obj(n={"type": ["string", "null"]}), "type-widened", False, "n"),
    (obj(n=INTEGER), obj(n={"type": "number"}), "type-widened", False, "n"),
    (
        obj(at={"type": "string", "format": "date-time"}),
        obj(at={"type": "string", "format": "date"}),
        "type-changed",
        True,
        "at",
    ),
    (obj(at=STRING), obj(at={"type": "string", "format": "uuid"}), "type-narrowed", True, "at"),
    (obj(at={"type": "string", "format": "uuid"}), obj(at=STRING), "type-widened", False, "at"),
    (obj(r={"enum": ["a", "b"]}), obj(r={"enum": ["a"]}), "enum-value-removed", True, "r"),
    (obj(r={"enum": ["a"]}), obj(r={"enum": ["a", "b"]}), "enum-value-added", False, "r"),
    (obj(r={"const": "a"}), obj(r={"enum": ["a", "b"]}), "enum-value-added", False, "r"),
    (obj(r=STRING), obj(r={"type": "string", "enum": ["a"]}), "enum-introduced", True, "r"),
    (obj(r={"type": "string", "enum": ["a"]}), obj(r=STRING), "enum-lifted", False, "r"),
    (
        obj(items={"type": "array", "items": obj("name", name=STRING)}),
        obj(items={"type": "array", "items": obj("name", name=INTEGER)}),
        "type-changed",
        True,
        "items[].name",
    ),
    (
        obj(tags={"type": "object", "additionalProperties": STRING}),
        obj(tags={"type": "object", "additionalProperties": INTEGER}),
        "type-changed",
        True,
        "tags{}",
    ),
    (obj(name=STRING), obj(extra=False, name=STRING), "constraint-narrowed", True, ""),
    (obj(extra=False, name=STRING), obj(name=STRING), "constraint-loosened", False, ""),
]


@pytest.mark.parametrize(("old", "new", "kind", "breaking", "field"), REQUEST_CASES)
def test_request_body_fields(old: Any, new: Any, kind: str, breaking: bool, field: str) -> None:
    expect(only(api(request=old), api(request=new)), kind, breaking, "request body", field)


LIMIT_CASES = [
    # keyword, old value, new value, narrowed
    ("maxLength", 10, 5, True),
    ("maxLength", None, 5, True),
    ("maxLength", 5, 10, False),
    ("maxLength", 5, None, False),
    ("maximum", 10, 9, True),
    ("exclusiveMaximum", 10, 9, True),
    ("maxItems", 3, 2, True),
    ("minLength", 1, 2, True),
    ("minLength", None, 1, True),
    ("minLength", 2, 1, False),
    ("minimum", 0, 1, True),
    ("exclusiveMinimum", 0, 1, True),
    ("minItems", None, 1, True),
    ("pattern", None, "^a", True),
    ("pattern", "^a", "^b", True),
    ("pattern", "^a", None, False),
]


@pytest.mark.parametrize(("keyword", "was", "now", "narrowed"), LIMIT_CASES)
def test_request_constraints(keyword: str, was: Any, now: Any, narrowed: bool) -> None:
    old = {} if was is None else {keyword: was}
    new = {} if now is None else {keyword: now}
    difference = only(api(request=obj(code=old)), api(request=obj(code=new)))
    kind = "constraint-narrowed" if narrowed else "constraint-loosened"
    expect(difference, kind, narrowed, "request body", "code")
    assert keyword in difference.message


def test_request_fields_merge_all_of_members() -> None:
    schemas = {"Base": obj("name", name=STRING)}
    old = api(
        request={"allOf": [{"$ref": "#/components/schemas/Base"}, obj("email", email=STRING)]},
        schemas=schemas,
    )
    new = api(request={"allOf": [{"$ref": "#/components/schemas/Base"}]}, schemas=schemas)
    expect(only(old, new), "request-field-removed", False, "request body", "email")
    inlined = api(request=obj("name", "email", name=STRING, email=STRING))
    assert diff_documents(old, inlined) == []


# Responses: a client must still find every field it read, with the values it expects.
RESPONSE_CASES = [
    (
        obj("id", "name", id=INTEGER, name=STRING),
        obj("id", id=INTEGER),
        "response-field-removed",
        True,
        "name",
    ),
    (
        obj("id", "name", id=INTEGER, name=STRING),
        obj("id", id=INTEGER, name=STRING),
        "response-field-made-optional",
        True,
        "name",
    ),
    (
        obj("id", id=INTEGER, name=STRING),
        obj("id", "name", id=INTEGER, name=STRING),
        "response-field-made-required",
        False,
        "name",
    ),
    (
        obj("id", id=INTEGER),
        obj("id", id=INTEGER, name=STRING),
        "response-field-added",
        False,
        "name",
    ),
    (obj(id=INTEGER), obj(id=STRING), "type-changed", True, "id"),
    (obj(n={"type": ["string", "null"]}), obj(n=STRING), "type-narrowed", True, "n"),
    (obj(n=STRING), obj(n={"type": ["string", "null"]}), "type-widened", True, "n"),
    (obj(n=STRING), obj(n={"anyOf": [STRING, {"type": "null"}]}), "type-widened", True, "n"),
    (obj(n=STRING), obj(n={}), "type-widened", True, "n"),
    (
        obj(at={"type": "string", "format": "date-time"}),
        obj(at={"type": "string", "format": "date"}),
        "type-changed",
        True,
        "at",
    ),
    (obj(r={"enum": ["a", "b"]}), obj(r={"enum": ["a"]}), "enum-value-removed", True, "r"),
    (obj(r={"enum": ["a"]}), obj(r={"enum": ["a", "b"]}), "enum-value-added", False, "r"),
    (obj(r=STRING), obj(r={"type": "string", "enum": ["a"]}), "enum-introduced", True, "r"),
    (obj(r={"type": "string", "enum": ["a"]}), obj(r=STRING), "enum-lifted", True, "r"),
    (
        obj(items={"type": "array", "items": obj("name", name=STRING)}),
        obj(items={"type": "array", "items": obj()}),
        "response-field-removed",
        True,
        "items[].name",
    ),
]


@pytest.mark.parametrize(("old", "new", "kind", "breaking", "field"), RESPONSE_CASES)
def test_response_body_fields(old: Any, new: Any, kind: str, breaking: bool, field: str) -> None:
    expect(only(api(response=old), api(response=new)), kind, breaking, "response 201", field)


def test_the_message_names_the_operation_status_and_field_path() -> None:
    old, new = api(), api()
    for document, item in ((old, obj("name", name=STRING)), (new, obj())):
        page = obj(items={"type": "array", "items": item})
        content = {"application/json": {"schema": page}}
        document["paths"][USERS]["get"]["responses"]["200"]["content"] = content
    difference = only(old, new)
    assert difference.message == f"GET {USERS}: response 200 field items[].name was removed"
    assert (difference.kind, difference.breaking) == ("response-field-removed", True)


def test_response_constraints_are_not_compared() -> None:
    old = api(response=obj(name={"type": "string", "maxLength": 10}))
    new = api(response=obj(name={"type": "string", "maxLength": 20}))
    assert diff_documents(old, new) == []


def test_optional_object_as_any_of_ref_and_null() -> None:
    """pydantic writes ``Address | None`` as anyOf a reference and null."""
    optional = {"anyOf": [{"$ref": "#/components/schemas/Address"}, {"type": "null"}]}
    old = api(
        response=obj(address=optional),
        schemas={"Address": obj("street", "city", street=STRING, city=STRING)},
    )
    new = api(response=obj(address=optional), schemas={"Address": obj("city", city=STRING)})
    expect(only(old, new), "response-field-removed", True, "response 201", "address.street")
    address = obj("street", "city", street=STRING, city=STRING) | {"type": ["object", "null"]}
    same = api(response=obj(address=address))
    assert diff_documents(old, same) == []
    nullable = api(response=obj(name={"anyOf": [STRING, {"type": "null"}]}))
    assert diff_documents(nullable, api(response=obj(name={"type": ["string", "null"]}))) == []


def test_recursive_schemas_terminate() -> None:
    def tree(*fields: str) -> dict[str, Any]:
        node = obj(
            *fields,
            **{name: STRING for name in fields},
            children={"type": "array", "items": {"$ref": "#/components/schemas/Node"}},
            parent={"anyOf": [{"$ref": "#/components/schemas/Node"}, {"type": "null"}]},
        )
        return api(response={"$ref": "#/components/schemas/Node"}, schemas={"Node": node})

    assert diff_documents(tree("name", "label"), tree("name", "label")) == []
    expect(
        only(tree("name", "label"), tree("name")),
        "response-field-removed",
        True,
        "response 201",
        "label",
    )


def test_mutually_recursive_schemas_terminate() -> None:
    def pair(name: Any) -> dict[str, Any]:
        schemas = {
            "A": obj(b={"$ref": "#/components/schemas/B"}, name=name),
            "B": obj(a={"$ref": "#/components/schemas/A"}),
        }
        return api(request={"$ref": "#/components/schemas/A"}, schemas=schemas)

    assert diff_documents(pair(STRING), pair(STRING)) == []
    expect(only(pair(STRING), pair(INTEGER)), "type-changed", True, "request body", "name")


# Parameters, matched by where they are and their name.
LIMIT = {
    "name": "limit",
    "in": "query",
    "required": False,
    "schema": {"type": "integer", "maximum": 100},
}
REQUIRED_LIMIT = {**LIMIT, "required": True}
PARAMETER_CASES = [
    ([LIMIT], [], "parameter-removed", True),
    ([], [REQUIRED_LIMIT], "required-parameter-added", True),
    ([], [LIMIT], "parameter-added", False),
    ([LIMIT], [REQUIRED_LIMIT], "parameter-made-required", True),
    ([REQUIRED_LIMIT], [LIMIT], "parameter-made-optional", False),
    (
        [LIMIT],
        [{**LIMIT, "schema": {"type": "integer", "maximum": 50}}],
        "constraint-narrowed",
        True,
    ),
    (
        [LIMIT],
        [{**LIMIT, "schema": {"type": "integer", "maximum": 500}}],
        "constraint-loosened",
        False,
    ),
    ([{**LIMIT, "schema": INTEGER}], [{**LIMIT, "schema": STRING}], "type-changed", True),
]


@pytest.mark.parametrize(("old", "new", "kind", "breaking"), PARAMETER_CASES)
def test_parameters(old: list[Any], new: list[Any], kind: str, breaking: bool) -> None:
    difference = only(api(parameters=old), api(parameters=new))
    expect(difference, kind, breaking, "parameter query limit")


def test_path_level_parameters_apply_to_every_operation() -> None:
    old, new = api(), api()
    old["paths"][USERS]["parameters"] = [LIMIT]
    removed = diff_documents(old, new)
    assert [(d.operation, d.kind, d.breaking) for d in removed] == [
        (f"GET {USERS}", "parameter-removed", True),
        (POST, "parameter-removed", True),
    ]
    # Moved from the path item into the operations: the same parameters.
    new["paths"][USERS]["post"]["parameters"] = [LIMIT]
    new["paths"][USERS]["get"]["parameters"] = [LIMIT]
    assert diff_documents(old, new) == []


def test_parameters_by_ref_and_header_names_in_any_case() -> None:
    header = {"name": "X-Trace", "in": "header", "schema": STRING}
    old = api(parameters=[{"$ref": "#/components/parameters/limit"}, header])
    old["components"]["parameters"] = {"limit": LIMIT}
    new = api(parameters=[LIMIT, {**header, "name": "x-trace"}])
    assert diff_documents(old, new) == []


def request_body(required: bool, *media: str) -> dict[str, Any]:
    content = {name: {"schema": obj("name", name=STRING)} for name in media}
    return {"required": required, "content": content}


BODY_CASES = [
    (
        request_body(False, "application/json"),
        request_body(True, "application/json"),
        "request-body-made-required",
        True,
    ),
    (None, request_body(True, "application/json"), "request-body-made-required", True),
    (None, request_body(False, "application/json"), "request-body-added", False),
    (
        request_body(True, "application/json"),
        request_body(False, "application/json"),
        "request-body-made-optional",
        False,
    ),
    (request_body(True, "application/json"), None, "request-body-removed", True),
    (
        request_body(True, "application/json", "text/csv"),
        request_body(True, "application/json"),
        "media-type-removed",
        True,
    ),
    (
        request_body(True, "application/json"),
        request_body(True, "application/json", "text/csv"),
        "media-type-added",
        False,
    ),
]


@pytest.mark.parametrize(("old", "new", "kind", "breaking"), BODY_CASES)
def test_request_bodies(old: Any, new: Any, kind: str, breaking: bool) -> None:
    difference = only(api(requestBody=old), api(requestBody=new))
    expect(difference, kind, breaking, "request body")


def test_status_codes_and_response_media_types() -> None:
    new = api()
    responses = new["paths"][USERS]["post"]["responses"]
    del responses["default"]
    responses["409"] = {"description": "Conflict", "content": PROBLEM}
    added, removed = diff_documents(api(), new)
    expect(added, "status-code-added", False, "response 409")
    expect(removed, "status-code-removed", True, "response default")

    new = api()
    del new["paths"][USERS]["post"]["responses"]["201"]["content"]["application/json"]
    difference = only(api(), new)
    expect(difference, "media-type-removed", True, "response 201")
    assert "application/json" in difference.message
    expect(only(new, api()), "media-type-added", False, "response 201")


def test_problem_bodies_are_compared_under_their_media_type() -> None:
    new = api()
    new["components"]["schemas"]["Problem"] = obj(title=STRING)
    difference = only(api(), new)
    expect(
        difference,
        "response-field-made-optional",
        True,
        "response default application/problem+json",
        "title",
    )


def test_unresolvable_refs_raise() -> None:
    broken = api(request={"$ref": "#/components/schemas/Missing"})
    with pytest.raises(ValueError, match="Missing"):
        diff_documents(broken, broken)
    external = api(request={"$ref": "other.json#/User"})
    with pytest.raises(ValueError, match="local"):
        diff_documents(external, external)


def test_order_is_by_operation_location_and_field() -> None:
    new = api(
        request=obj("name", "b", "a", name=STRING, a=STRING, b=STRING),
        response=obj("id", id=INTEGER),
    )
    new["paths"][USERS]["get"]["parameters"] = [REQUIRED_LIMIT]
    differences = diff_documents(api(), new)
    assert [(d.operation, d.location, d.field) for d in differences] == [
        (f"GET {USERS}", "parameter query limit", ""),
        (POST, "request body", "a"),
        (POST, "request body", "b"),
        (POST, "response 201", "name"),
    ]
    assert diff_documents(api(), new) == differences


def test_format_differences_and_has_breaking() -> None:
    new = api(response=obj("id", "name", "email", id=INTEGER, name=STRING, email=STRING))
    new["paths"][USERS]["get"]["parameters"] = [REQUIRED_LIMIT]
    differences = diff_documents(api(), new)
    assert has_breaking(differences)
    assert format_differences(differences) == (
        f"BREAKING   GET {USERS}: parameter query limit was added as required\n"
        f"compatible {POST}: response 201 field email was added\n"
        "1 breaking, 1 compatible differences"
    )
    compatible = [d for d in differences if not d.breaking]
    assert not has_breaking(compatible)
    assert not has_breaking([])
    assert format_differences(compatible).endswith("\n0 breaking, 1 compatible differences")


class Address(BaseModel):
    street: str
    city: str | None = None


class UserOut(BaseModel):
    id: int
    name: str
    address: Address | None = None


class UserIn(BaseModel):
    name: str


class Created(BaseModel):
    id: int


def generated_document() -> dict[str, Any]:
    """The document lockgate serves for a tiny versioned app."""
    app = Flask("diff")
    versioning = Versioning(app, versions=[Version("1")], clock=Clock(NOW))
    users = Blueprint("users", __name__)

    @users.post("/users")
    @operation(request=UserIn, response=Created, status=201)
    def create() -> Any:
        return {"id": 1}, 201

    @users.get("/users/<int:id>")
    @operation(response=UserOut)
    def show(id: int) -> Any:
        return {"id": id, "name": "a"}

    versioning.register_blueprint(users, version="1")
    document: dict[str, Any] = app.test_client().get("/api/v1/openapi.json").get_json()
    return document


def test_a_generated_document() -> None:
    document = generated_document()
    schemas = document["components"]["schemas"]
    assert {"UserOut", "Address", "UserInInput", "Problem"} <= set(schemas)
    assert diff_documents(document, copy.deepcopy(document)) == []

    new = copy.deepcopy(document)
    del new["components"]["schemas"]["UserOut"]["properties"]["address"]
    difference = only(document, new)
    assert difference.breaking
    assert (difference.kind, difference.operation) == (
        "response-field-removed",
        "GET /api/v1/users/{id}",
    )
    assert difference.message == "GET /api/v1/users/{id}: response 200 field address was removed"

    # The nested model behind ``Address | None`` is compared too.
    new = copy.deepcopy(document)
    del new["components"]["schemas"]["Address"]["properties"]["city"]
    assert only(document, new).field == "address.city"


def test_a_token_newly_required_or_a_scope_added_is_breaking() -> None:
    read = [{"oauth2": ["users:read"]}]
    expect(only(api(), api(security=read)), "security-tightened", True, "security")
    both = [{"oauth2": ["users:read", "users:write"]}]
    expect(only(api(security=read), api(security=both)), "security-tightened", True, "security")
    # Fewer scopes, an alternative added, or none at all: every old client still passes.
    expect(only(api(security=both), api(security=read)), "security-relaxed", False, "security")
    either = [*read, {"apiKey": []}]
    expect(only(api(security=read), api(security=either)), "security-relaxed", False, "security")
    expect(only(api(security=read), api(security=None)), "security-relaxed", False, "security")
    # The document's own requirement applies to operations that declare none.
    documented = api()
    documented["security"] = read
    assert [d.operation for d in diff_documents(documented, api(security=read))] == [
        f"GET {USERS}"  # which the document's requirement covered, and now nothing does
    ]
    assert has_breaking(diff_documents(api(), documented))
