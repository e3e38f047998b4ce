"""Requests an outside tester makes on purpose, against the real fleet.

Every error a client can cause is a 4xx ``application/problem+json`` with an
``X-Request-ID`` and a log line, never a 5xx; and a version's OpenAPI document
accepts exactly the inputs the service accepts. The module runs on SQLite and
on PostgreSQL.
"""

from __future__ import annotations

import base64
import json
import uuid
from typing import Any

import httpx
import pytest
from jsonschema import Draft202012Validator, FormatChecker

from tests.servers import Fleet, unique_email

PROBLEM = "application/problem+json"
HUGE = "1" * 4301
BIGINT_MAX = 2**63 - 1


def logged(fleet: Fleet, request_id: str) -> list[dict[str, Any]]:
    """The fleet's access-log lines of one request."""
    found = []
    for line in fleet.log.read_text().splitlines():
        if request_id in line and line.startswith("{"):
            record = json.loads(line)
            if record.get("event") == "request" and record.get("request_id") == request_id:
                found.append(record)
    return found


def refused(
    fleet: Fleet, method: str, url: str, status: int, code: str | None = None, **kwargs: Any
) -> dict[str, Any]:
    """Send a request that must be refused: a problem with an id and one log line."""
    request_id = f"hostile-{uuid.uuid4().hex[:12]}"
    headers = {"X-Request-ID": request_id, **kwargs.pop("headers", {})}
    response = fleet.http.request(method, url, headers=headers, **kwargs)
    assert response.status_code == status, response.text[:500]
    assert response.headers["content-type"] == PROBLEM
    assert response.headers["x-request-id"] == request_id
    assert response.headers["x-content-type-options"] == "nosniff"
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    if code is not None:
        assert body["code"] == code
    assert [r["status"] for r in logged(fleet, request_id)] == [status]
    return body


def test_integers_past_64_bits_are_invalid_queries(fleet: Fleet) -> None:
    for params in (
        {"offset": 2**63},
        {"offset": 99999999999999999999},
        {"offset": "9" * 5000},
        {"offset": "1.0"},
        {"offset": "+1"},
        {"offset": "1_000"},
        {"limit": " 5"},
    ):
        body = refused(fleet, "GET", "/api/v1/users", 400, "InvalidQuery", params=params)
        assert [error["field"] for error in body["errors"]] == list(params)
    for params in ({"limit": 2**63}, {"limit": "1e3"}):
        refused(fleet, "GET", "/api/v2/users", 400, "InvalidQuery", params=params)
    # The largest offset is served (an empty page), as is a clamped huge limit.
    assert fleet.http.get("/api/v1/users", params={"offset": BIGINT_MAX}).json() == []
    assert fleet.http.get("/api/v1/users", params={"limit": "9" * 5000}).status_code == 200


def cursor(after: int) -> str:
    """A v2 cursor: the id as 8 bytes of unpadded base64url."""
    return base64.urlsafe_b64encode(after.to_bytes(8, "big")).decode().rstrip("=")


def test_every_cursor_the_document_admits_is_served(fleet: Fleet) -> None:
    # Past PostgreSQL's INTEGER ids and up to the 64-bit maximum: empty pages.
    for after in (2**31 - 1, 2**31, 2**62, BIGINT_MAX):
        response = fleet.http.get("/api/v2/users", params={"cursor": cursor(after)})
        assert response.status_code == 200, response.text
        assert response.json() == {"data": [], "next_cursor": None}
    assert fleet.http.get("/api/v2/users", params={"cursor": cursor(0)}).status_code == 200
    # Not cursors: empty, the top bit set (past 2**63 - 1), padding bits set,
    # the wrong length, and the JSON cursors of earlier releases.
    for bad in ("", "gAAAAAAAAAA", "AAAAAAAAAAB", "AAAAAAAAAA", "eyJhZnRlciI6NX0", HUGE):
        body = refused(fleet, "GET", "/api/v2/users", 400, "InvalidQuery", params={"cursor": bad})
        assert body["errors"][0]["field"] == "cursor"
    refused(fleet, "GET", "/api/v2/users", 400, "InvalidQuery", params={"email": ""})
    refused(fleet, "GET", "/api/v2/users", 400, "InvalidQuery", params={"email": "a\x00@b.co"})


@pytest.mark.parametrize(
    ("where", "request_kwargs"),
    [
        ("url", {"url": f"/api/v{HUGE}/users"}),
        ("header", {"headers": {"API-Version": HUGE}}),
        ("query", {"params": {"version": HUGE}}),
        ("accept", {"headers": {"Accept": f"application/vnd.lockgate.v{HUGE}+json"}}),
        ("accept", {"headers": {"Accept": f"application/vnd.lockgate+json; version={HUGE}"}}),
    ],
)
def test_a_huge_version_label_is_an_invalid_version(
    fleet: Fleet, where: str, request_kwargs: dict[str, Any]
) -> None:
    kwargs = dict(request_kwargs)  # shared by the SQLite and PostgreSQL runs
    url = kwargs.pop("url", "/api/users")
    body = refused(fleet, "GET", url, 400, "InvalidApiVersion", **kwargs)
    assert body["source"] == where


def test_a_huge_version_label_in_the_content_type_is_an_invalid_version(fleet: Fleet) -> None:
    headers = {"Content-Type": f"application/vnd.lockgate.v{HUGE}+json"}
    body = refused(fleet, "POST", "/api/users", 400, "InvalidApiVersion", headers=headers)
    assert body["source"] == "content-type"


def test_the_slash_merging_redirect_names_no_host(fleet: Fleet) -> None:
    response = fleet.http.get("/api/v2//users?limit=1", headers={"Host": "evil.example"})
    assert response.status_code == 308
    assert response.headers["location"] == "/api/v2/users?limit=1"
    assert response.content == b""
    assert "content-type" not in response.headers
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["x-request-id"]


def test_untrusted_hosts_are_refused(start_fleet: Any) -> None:
    fleet = start_fleet({"LOCKGATE_TRUSTED_HOSTS": "127.0.0.1,localhost"})
    assert fleet.http.get("/api/v2/users").status_code == 200
    for path in ("/api/v2/users", "/api/v2//users", "/healthz", "/docs"):
        body = refused(fleet, "GET", path, 400, headers={"Host": "evil.example"})
        assert "evil.example" not in json.dumps(body).replace(body.get("detail", ""), "")


def test_nosniff_everywhere(fleet: Fleet) -> None:
    for path in (
        "/api/v2/users",
        "/api/v1/users",
        "/api/v0/users",
        "/api/v2/users/987654321",
        "/nowhere",
        "/healthz",
        "/readyz",
        "/metrics",
        "/docs",
        "/api/versions",
        "/api/v2/openapi.json",
        "/docs/migrations/v1-to-v2",
    ):
        response = fleet.http.get(path)
        assert response.headers.get_list("x-content-type-options") == ["nosniff"], path


# --- the document and the service agree on every body ---------------------------------


def body_schema(fleet: Fleet, version: str, method: str, path: str) -> Draft202012Validator:
    document = fleet.http.get(f"/api/v{version}/openapi.json").json()
    operation = document["paths"][f"/api/v{version}{path}"][method]
    schema = operation["requestBody"]["content"]["application/json"]["schema"]
    root = {**schema, "components": document["components"]}
    return Draft202012Validator(root, format_checker=FormatChecker())


#: Bodies (``EMAIL`` stands for a fresh address) the document and the service
#: used to disagree on, and the neighbours that show where each line runs.
EMAIL = "<fresh>"
CR = "\r"
NEL = "\x85"
V1_NEW = [
    {"name": "Ada Lovelace", "email": EMAIL},
    {"name": "Ada  Lovelace ", "email": EMAIL},
    {"name": "A" * 100 + " " + "B" * 100, "email": EMAIL},
    {"name": CR + "A" * 201, "email": EMAIL},
    {"name": " Ada", "email": EMAIL},
    {"name": "A" * 101, "email": EMAIL},
    {"name": "A" * 100 + " " + "B" * 101, "email": EMAIL},
    {"name": "Ada\x00Lovelace", "email": EMAIL},
    {"name": "Ada\x1b[31m", "email": EMAIL},
    {"name": "Ada" + NEL, "email": EMAIL},
    {"name": "Ada", "email": ""},
    {"name": "Ada", "email": "ada\x00@example.com"},
    {"name": "Ada", "email": " ada@example.com"},
    {"name": "Ada", "email": "ada@example.test"},
    {"name": "Ada", "email": "ada@EXAMPLE.LOCALHOST"},
    {"name": "Ada", "email": "not an address"},
    {"name": "Ada", "email": "x" * 64 + "@" + "e" * 63 + "." + "f" * 63 + "." + "g" * 58 + ".com"},
    {"name": None, "email": EMAIL},
]
V2_NEW = [
    {"first_name": "Grace", "last_name": "Hopper", "email": EMAIL},
    {"first_name": " Grace ", "last_name": "", "email": EMAIL},
    {"first_name": "G" * 100, "last_name": "H" * 100, "email": EMAIL},
    {"first_name": NEL + "G" * 100, "last_name": "H", "email": EMAIL},
    {"first_name": "G" * 101, "last_name": "H", "email": EMAIL},
    {"first_name": "", "last_name": "H", "email": EMAIL},
    {"first_name": "Gr\tace", "last_name": "H", "email": EMAIL},
    {"first_name": "Grace", "last_name": "Hop\u007fper", "email": EMAIL},
    {"first_name": "Grace", "last_name": "Hopper", "email": ""},
    {"first_name": "Grace", "last_name": None, "email": EMAIL},
]
PATCHES = {
    "1": [{}, {"email": EMAIL}, {"email": None}, {"name": None}, {"name": CR + "A" * 201}],
    "2": [
        {"last_name": ""},
        {"email": None},
        {"first_name": None},
        {"first_name": NEL + "G" * 100},
        {"last_name": "x\x00"},
    ],
}


def fresh(body: dict[str, Any]) -> dict[str, Any]:
    return {key: unique_email() if value == EMAIL else value for key, value in body.items()}


def agree(validator: Draft202012Validator, response: httpx.Response, body: Any) -> None:
    valid = validator.is_valid(body)
    accepted = response.status_code < 300
    assert valid == accepted, (body, response.status_code, response.text[:300])
    assert response.status_code < 500
    if not accepted:
        assert response.status_code in (400, 422), response.text


@pytest.mark.parametrize("version", ["1", "2"])
def test_the_document_accepts_exactly_what_the_service_accepts(fleet: Fleet, version: str) -> None:
    validator = body_schema(fleet, version, "post", "/users")
    for body in map(fresh, V1_NEW if version == "1" else V2_NEW):
        response = fleet.http.post(f"/api/v{version}/users", json=body)
        agree(validator, response, body)
        if response.status_code == 201:
            stored = fleet.http.get(response.headers["location"]).json()
            # What was accepted is stored as sent: nothing stripped, nothing cut.
            for field in set(body) - {"email"}:
                assert stored[field] == body[field]
    user = fleet.http.post(
        "/api/v2/users", json={"first_name": "P", "last_name": "Q", "email": unique_email()}
    ).json()
    validator = body_schema(fleet, version, "patch", "/users/{user_id}")
    for body in map(fresh, PATCHES[version]):
        response = fleet.http.patch(f"/api/v{version}/users/{user['id']}", json=body)
        agree(validator, response, body)


def test_names_are_split_and_joined_exactly(fleet: Fleet) -> None:
    name = "Ada  King Lovelace "
    created = fleet.http.post("/api/v1/users", json={"name": name, "email": unique_email()})
    assert created.status_code == 201, created.text
    assert created.json()["name"] == name
    v2 = fleet.http.get(f"/api/v2/users/{created.json()['id']}").json()
    assert (v2["first_name"], v2["last_name"]) == ("Ada", " King Lovelace ")


def test_emails_are_checked_by_a_real_validator(fleet: Fleet) -> None:
    local = f"Ada-{uuid.uuid4().hex[:8]}"
    response = fleet.http.post(
        "/api/v2/users", json={"first_name": "A", "last_name": "B", "email": f"{local}@EXAMPLE.COM"}
    )
    assert response.status_code == 201, response.text
    # The domain is normalised; the local part is the client's.
    assert response.json()["email"] == f"{local}@example.com"
    for email in ("ada\x00@example.com", "ada@example..com", "ada@-example.com", "ada@[1.2.3.4]"):
        body = {"first_name": "A", "last_name": "B", "email": email}
        errors = refused(fleet, "POST", "/api/v2/users", 422, "ValidationFailed", json=body)
        assert [error["field"] for error in errors["errors"]] == ["email"]


def test_a_lone_surrogate_is_malformed_json(fleet: Fleet) -> None:
    for text in ('"\\ud800"', '"A\\udfff"', '"\\ud83d x"'):
        content = f'{{"first_name": {text}, "last_name": "B", "email": "{unique_email()}"}}'
        refused(
            fleet,
            "POST",
            "/api/v2/users",
            400,
            "MalformedJson",
            content=content.encode(),
            headers={"Content-Type": "application/json"},
        )
    # A pair is one character, and is stored.
    content = f'{{"first_name": "\\ud83d\\ude00", "last_name": "B", "email": "{unique_email()}"}}'
    response = fleet.http.post(
        "/api/v2/users", content=content.encode(), headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 201
    assert response.json()["first_name"] == "\U0001f600"
