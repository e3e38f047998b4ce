"""The users service end to end, through HTTP against `lockgate run`.

The module runs twice: on the embedded SQLite and on PostgreSQL.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
from openapi_spec_validator import validate

from tests.servers import Fleet, unique_email

PROBLEM = "application/problem+json"
JSON_TYPE = {"Content-Type": "application/json"}


def problem(response: httpx.Response, status: int, code: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert body["type"] and body["title"] and body["detail"]
    if code:
        assert body["code"] == code
    return body


def create_v1(fleet: Fleet, name: str = "Ada King Lovelace", email: str | None = None) -> Any:
    response = fleet.http.post(
        "/api/v1/users", json={"name": name, "email": email or unique_email()}
    )
    assert response.status_code == 201, response.text
    return response


def create_v2(fleet: Fleet, **fields: str) -> Any:
    body = {"first_name": "Grace", "last_name": "Hopper", "email": unique_email(), **fields}
    response = fleet.http.post("/api/v2/users", json=body)
    assert response.status_code == 201, response.text
    return response


def test_written_by_v1_read_by_v2(fleet: Fleet) -> None:
    email = unique_email("ada")
    created = create_v1(fleet, "Ada King Lovelace", email)
    user = created.json()
    assert user == {"id": user["id"], "name": "Ada King Lovelace", "email": email}
    assert created.headers["location"] == f"/api/v1/users/{user['id']}"
    v2 = fleet.http.get(f"/api/v2/users/{user['id']}").json()
    assert v2["first_name"] == "Ada"
    assert v2["last_name"] == "King Lovelace"
    assert v2["email"] == email
    assert v2["created_at"].endswith("Z") and "T" in v2["created_at"]


def test_written_by_v2_read_by_v1(fleet: Fleet) -> None:
    created = create_v2(fleet, first_name="Grace", last_name="Hopper")
    user = created.json()
    assert set(user) == {"id", "first_name", "last_name", "email", "created_at"}
    assert created.headers["location"] == f"/api/v2/users/{user['id']}"
    v1 = fleet.http.get(f"/api/v1/users/{user['id']}").json()
    assert v1 == {"id": user["id"], "name": "Grace Hopper", "email": user["email"]}


def test_location_follows_the_clients_scheme(fleet: Fleet) -> None:
    response = fleet.http.post(
        "/api/users",
        json={"name": "Alan Turing", "email": unique_email()},
        headers={"API-Version": "1"},
    )
    assert response.status_code == 201
    assert response.headers["location"] == f"/api/users/{response.json()['id']}"
    assert response.json()["name"] == "Alan Turing"


def test_single_word_name_has_an_empty_last_name(fleet: Fleet) -> None:
    user = create_v1(fleet, "Plato").json()
    v2 = fleet.http.get(f"/api/v2/users/{user['id']}").json()
    assert (v2["first_name"], v2["last_name"]) == ("Plato", "")


def test_v1_list_is_a_bare_array_with_limit_and_offset(fleet: Fleet) -> None:
    ids = [create_v1(fleet).json()["id"] for _ in range(3)]
    everything = fleet.http.get("/api/v1/users").json()
    assert isinstance(everything, list)
    assert len(everything) <= 100
    listed = [u["id"] for u in everything]
    assert listed == sorted(listed)
    position = listed.index(ids[0])
    page = fleet.http.get("/api/v1/users", params={"limit": 2, "offset": position}).json()
    assert [u["id"] for u in page] == ids[:2]
    assert set(page[0]) == {"id", "name", "email"}
    for bad in ({"limit": -1}, {"limit": 0}, {"limit": "ten"}, {"offset": -1}):
        problem(fleet.http.get("/api/v1/users", params=bad), 400, "InvalidQuery")


def test_v1_limit_over_100_is_clamped_to_100(fleet: Fleet) -> None:
    for _ in range(101):
        create_v1(fleet)
    for limit in (101, 1000, 10**30):
        response = fleet.http.get("/api/v1/users", params={"limit": limit})
        assert response.status_code == 200, response.text
        assert len(response.json()) == 100


def test_v2_list_pages_with_a_cursor(fleet: Fleet) -> None:
    for _ in range(5):
        create_v2(fleet)
    seen: list[int] = []
    cursor = None
    pages = 0
    while True:
        params: dict[str, Any] = {"limit": 2}
        if cursor:
            params["cursor"] = cursor
        body = fleet.http.get("/api/v2/users", params=params).json()
        assert set(body) == {"data", "next_cursor"}
        assert len(body["data"]) <= 2
        seen.extend(u["id"] for u in body["data"])
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            break
        assert pages < 1000
    assert seen == sorted(seen) and len(seen) == len(set(seen))
    assert len(seen) >= 5
    default = fleet.http.get("/api/v2/users").json()
    assert len(default["data"]) == min(20, len(seen))
    for bad in ({"limit": 0}, {"limit": 101}, {"cursor": "not-a-cursor"}):
        problem(fleet.http.get("/api/v2/users", params=bad), 400, "InvalidQuery")


def test_v2_email_filter(fleet: Fleet) -> None:
    email = unique_email("filter")
    created = create_v2(fleet, email=email).json()
    body = fleet.http.get("/api/v2/users", params={"email": email}).json()
    assert [u["id"] for u in body["data"]] == [created["id"]]
    assert body["next_cursor"] is None
    assert fleet.http.get("/api/v2/users", params={"email": "nobody@example.com"}).json() == {
        "data": [],
        "next_cursor": None,
    }


def test_patch_in_both_versions(fleet: Fleet) -> None:
    user = create_v1(fleet, "Ada Lovelace").json()
    url = f"/api/v1/users/{user['id']}"
    patched = fleet.http.patch(url, json={"name": "Ada King Lovelace"})
    assert patched.status_code == 200
    assert patched.json()["name"] == "Ada King Lovelace"
    v2 = fleet.http.patch(f"/api/v2/users/{user['id']}", json={"last_name": "Byron"})
    assert v2.json()["first_name"] == "Ada" and v2.json()["last_name"] == "Byron"
    # the GET right after a PATCH sees the change
    assert fleet.http.get(url).json()["name"] == "Ada Byron"
    problem(fleet.http.patch(url, json={"name": None}), 422, "ValidationFailed")
    problem(fleet.http.patch("/api/v1/users/999999999", json={"name": "X"}), 404, "UserNotFound")


def test_delete(fleet: Fleet) -> None:
    user = create_v2(fleet).json()
    response = fleet.http.delete(f"/api/v1/users/{user['id']}")
    assert response.status_code == 204
    assert response.content == b""
    assert "content-type" not in response.headers
    problem(fleet.http.get(f"/api/v2/users/{user['id']}"), 404, "UserNotFound")
    problem(fleet.http.delete(f"/api/v2/users/{user['id']}"), 404, "UserNotFound")


def test_unknown_id(fleet: Fleet) -> None:
    for version in ("1", "2"):
        body = problem(fleet.http.get(f"/api/v{version}/users/987654321"), 404, "UserNotFound")
        assert "987654321" in body["detail"]


def test_ids_beyond_the_databases_integer_range_are_unknown(fleet: Fleet) -> None:
    # past PostgreSQL's INTEGER, past SQLite's 64 bits, past any database's integers
    for user_id in (2**31, 2**63 - 1, 2**63, 99999999999999999999):
        for version in ("1", "2"):
            url = f"/api/v{version}/users/{user_id}"
            body = problem(fleet.http.get(url), 404, "UserNotFound")
            assert str(user_id) in body["detail"]
            problem(fleet.http.patch(url, json={"email": unique_email()}), 404, "UserNotFound")
            problem(fleet.http.delete(url), 404, "UserNotFound")


def test_duplicate_email_is_case_insensitive(fleet: Fleet) -> None:
    email = unique_email("dup")
    create_v1(fleet, "First User", email)
    response = fleet.http.post(
        "/api/v2/users", json={"first_name": "B", "last_name": "C", "email": email.upper()}
    )
    problem(response, 409, "DuplicateEmail")
    other = create_v2(fleet).json()
    problem(fleet.http.patch(f"/api/v2/users/{other['id']}", json={"email": email}), 409)


def test_concurrent_creates_of_one_email_exactly_one_wins(fleet: Fleet) -> None:
    email = unique_email("race")

    def post(index: int) -> int:
        with httpx.Client(base_url=fleet.base, headers=fleet.http.headers, timeout=30) as client:
            body = {"first_name": f"Racer{index}", "last_name": "X", "email": email}
            return client.post("/api/v2/users", json=body).status_code

    with ThreadPoolExecutor(max_workers=20) as pool:
        statuses = list(pool.map(post, range(20)))
    assert statuses.count(201) == 1
    assert statuses.count(409) == 19
    found = fleet.http.get("/api/v2/users", params={"email": email}).json()["data"]
    assert len(found) == 1


def test_invalid_fields_are_listed(fleet: Fleet) -> None:
    response = fleet.http.post("/api/v2/users", json={"first_name": "", "email": "nope"})
    body = problem(response, 422, "ValidationFailed")
    fields = {error["field"] for error in body["errors"]}
    assert {"first_name", "last_name", "email"} <= fields
    assert all(error["message"] for error in body["errors"])


def test_unknown_and_read_only_fields_are_rejected(fleet: Fleet) -> None:
    for extra in ({"id": 5}, {"created_at": "2020-01-01T00:00:00Z"}, {"nickname": "x"}):
        body = {"first_name": "A", "last_name": "B", "email": unique_email(), **extra}
        errors = problem(fleet.http.post("/api/v2/users", json=body), 422)["errors"]
        assert [e["field"] for e in errors] == list(extra)
    v1 = {"name": "A B", "email": unique_email(), "first_name": "A"}
    errors = problem(fleet.http.post("/api/v1/users", json=v1), 422)["errors"]
    assert [e["field"] for e in errors] == ["first_name"]


def test_malformed_deep_foreign_and_huge_bodies(fleet: Fleet) -> None:
    headers = {"Content-Type": "application/json"}
    problem(fleet.http.post("/api/v2/users", content=b'{"first_name": ', headers=headers), 400)
    deep = "[" * 33 + "]" * 33
    body = problem(fleet.http.post("/api/v2/users", content=deep.encode(), headers=headers), 400)
    assert "32" in body["detail"]
    # 32 levels is allowed (and then fails validation, not parsing)
    ok_depth = json.dumps({"first_name": [[[]]]})
    problem(fleet.http.post("/api/v2/users", content=ok_depth.encode(), headers=headers), 422)
    problem(
        fleet.http.post(
            "/api/v2/users", content=b"first_name=a", headers={"Content-Type": "text/plain"}
        ),
        415,
    )
    huge = json.dumps({"first_name": "x" * (1024 * 1024), "last_name": "y", "email": "a@b.co"})
    problem(fleet.http.post("/api/v2/users", content=huge.encode(), headers=headers), 413)
    # without Content-Length (chunked) the same body is refused, not cut short and parsed
    chunks = (huge[i : i + 65536].encode() for i in range(0, len(huge), 65536))
    chunked = fleet.http.post("/api/v2/users", content=chunks, headers=headers)
    assert "content-length" not in chunked.request.headers
    assert chunked.request.headers["transfer-encoding"] == "chunked"
    body = problem(chunked, 413, "PayloadTooLarge")
    assert body["type"].endswith("/payload-too-large")
    sized = fleet.http.post("/api/v2/users", content=huge.encode(), headers=headers)
    assert problem(sized, 413, "PayloadTooLarge")["type"] == body["type"]
    # nothing was written by any of them
    assert fleet.http.get("/api/v2/users", params={"email": "a@b.co"}).json()["data"] == []


def test_json_outside_rfc_8259_or_ambiguous_is_malformed(fleet: Fleet) -> None:
    email = unique_email("strict")
    fields = f'"last_name": "B", "email": "{email}"'
    for value in ("NaN", "Infinity", "-Infinity"):
        body = f'{{"first_name": {value}, {fields}}}'.encode()
        response = fleet.http.post("/api/v2/users", content=body, headers=JSON_TYPE)
        problem(response, 400, "MalformedJson")
    repeated = f'{{"first_name": "A", "first_name": "Z", {fields}}}'.encode()
    for version in ("1", "2"):
        response = fleet.http.post(f"/api/v{version}/users", content=repeated, headers=JSON_TYPE)
        assert "first_name" in problem(response, 400, "MalformedJson")["detail"]
    assert fleet.http.get("/api/v2/users", params={"email": email}).json()["data"] == []


def test_lifecycle_headers(fleet: Fleet) -> None:
    v1 = fleet.http.get("/api/v1/users")
    assert v1.headers["api-version"] == "1"
    assert v1.headers["deprecation"] == "@1767225600"
    assert v1.headers["sunset"] == "Wed, 30 Jun 2027 23:59:59 GMT"
    links = v1.headers["link"]
    assert '</docs/migrations/v1-to-v2>; rel="deprecation"; type="text/html"' in links
    assert '</api/v2/users>; rel="successor-version"' in links
    v2 = fleet.http.get("/api/users")
    assert v2.headers["api-version"] == "2"
    assert "deprecation" not in v2.headers and "sunset" not in v2.headers
    assert {"Accept", "API-Version"} <= {v.strip() for v in v2.headers["vary"].split(",")}
    assert v2.headers["api-supported-versions"] == "2"
    assert v2.headers["api-deprecated-versions"] == "1"
    media = fleet.http.get("/api/users", headers={"Accept": "application/vnd.lockgate.v1+json"})
    assert media.headers["content-type"] == "application/vnd.lockgate.v1+json"
    assert isinstance(media.json(), list)


def test_v0_is_gone(fleet: Fleet) -> None:
    for response in (
        fleet.http.get("/api/v0/users"),
        fleet.http.get("/api/users", headers={"API-Version": "0"}),
        fleet.http.post("/api/users?version=0", json={}),
    ):
        body = problem(response, 410, "ApiVersionSunset")
        assert body["successor"] == "2"
        assert 'rel="successor-version"' in response.headers["link"]


def test_neutral_routes(fleet: Fleet) -> None:
    for path in ("/healthz", "/api/versions", "/api/v1/openapi.json", "/docs"):
        response = fleet.http.get(path, headers={"API-Version": "banana"})
        assert response.status_code == 200, path
        assert "api-version" not in response.headers
    catalog = {entry["version"]: entry for entry in fleet.http.get("/api/versions").json()}
    assert catalog["0"]["status"] == "retired"
    assert catalog["1"]["status"] == "deprecated"
    assert catalog["1"]["policy"] == "/docs/migrations/v1-to-v2"
    assert catalog["2"]["status"] == "current"
    for version in ("1", "2"):
        document = fleet.http.get(f"/api/v{version}/openapi.json").json()
        validate(document)
        exports = {"/api/v2/users/exports"} if version == "2" else set()
        assert set(document["paths"]) == {
            f"/api/v{version}/users",
            f"/api/v{version}/users/{{user_id}}",
            f"/api/v{version}/jobs/{{job_id}}",
            f"/api/v{version}/jobs/{{job_id}}/result",
            *exports,
        }


def test_migration_guide(fleet: Fleet) -> None:
    response = fleet.http.get("/docs/migrations/v1-to-v2")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    page = response.text
    for term in (
        "first_name",
        "last_name",
        "created_at",
        "next_cursor",
        "?cursor",
        "?offset",
        "name",
    ):
        assert f"<code>{term}</code>" in page, term
    assert "POST /api/v1/users" in page and "POST /api/v2/users" in page
