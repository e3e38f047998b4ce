"""Every row of the negotiation table, through HTTP, for each reader."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask

VENDOR = "application/vnd.myapp.v{}+json"

#: How each reader carries a version label: (method, path, headers).
READERS = {
    "url": lambda label: ("GET", f"/api/v{label}/users", {}),
    "header": lambda label: ("GET", "/api/users", {"API-Version": label}),
    "query": lambda label: ("GET", f"/api/users?version={label}", {}),
    "accept": lambda label: ("GET", "/api/users", {"Accept": VENDOR.format(label)}),
    "accept-param": lambda label: (
        "GET",
        "/api/users",
        {"Accept": f"application/vnd.myapp+json; version={label}"},
    ),
    "content-type": lambda label: (
        "POST",
        "/api/users",
        {"Content-Type": VENDOR.format(label)},
    ),
}


def ask(client: Any, reader: str, label: str) -> Any:
    method, path, headers = READERS[reader](label)
    return client.open(path, method=method, headers=headers, data=b'{"name": "Ada"}')


def assert_problem(response: Any, status: int, code: str | None) -> dict[str, Any]:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/problem+json"
    body: dict[str, Any] = response.get_json(force=True)
    assert body["status"] == status
    assert body["title"]
    assert body["detail"]
    assert body["type"]
    if code is not None:
        assert body["code"] == code
        assert body["type"].endswith("-".join(_words(code)))
    return body


def _words(code: str) -> list[str]:
    out: list[str] = []
    for char in code:
        if char.isupper():
            out.append(char.lower())
        else:
            out[-1] += char
    return out


@pytest.mark.parametrize("reader", list(READERS))
@pytest.mark.parametrize(("label", "served"), [("2", "2"), ("1", "1"), ("1.0", "1"), ("v2", "2")])
def test_each_reader_selects_the_version(client: Any, reader: str, label: str, served: str) -> None:
    if reader == "url" and label == "v2":
        label = "2"  # the path segment already carries the "v"
    response = ask(client, reader, label)
    assert response.status_code in (200, 201)
    assert response.headers["API-Version"] == served
    if reader != "content-type":
        assert response.get_json(force=True)["version"] == served


@pytest.mark.parametrize(
    ("reader", "status"),
    [
        ("url", 404),
        ("header", 400),
        ("query", 400),
        ("accept", 406),
        ("accept-param", 406),
        ("content-type", 415),
    ],
)
def test_unknown_version(client: Any, reader: str, status: int) -> None:
    body = assert_problem(ask(client, reader, "9"), status, "UnsupportedApiVersion")
    assert "9" in body["detail"]


@pytest.mark.parametrize("reader", list(READERS))
def test_malformed_version(client: Any, reader: str) -> None:
    label = "1x" if reader == "url" else "banana"
    body = assert_problem(ask(client, reader, label), 400, "InvalidApiVersion")
    assert label in body["detail"]


@pytest.mark.parametrize(
    ("path", "headers"),
    [
        ("/api/v1/users", {"API-Version": "2"}),
        ("/api/users?version=1", {"API-Version": "2"}),
        ("/api/users?version=1&version=2", {}),
        ("/api/users", {"API-Version": "1, 2"}),
        ("/api/users", {"Accept": VENDOR.format(1), "API-Version": "2"}),
        ("/api/v2/users", {"Accept": VENDOR.format(1)}),
        ("/api/users", {"Accept": f"{VENDOR.format(1)}, {VENDOR.format(2)}"}),
    ],
)
def test_disagreeing_readers_are_ambiguous(client: Any, path: str, headers: dict[str, str]) -> None:
    body = assert_problem(client.get(path, headers=headers), 400, "AmbiguousApiVersion")
    assert body["versions"] == ["1", "2"]


def test_two_header_lines_disagreeing(client: Any) -> None:
    response = client.get("/api/users", headers=[("API-Version", "1"), ("API-Version", "2")])
    assert_problem(response, 400, "AmbiguousApiVersion")


@pytest.mark.parametrize(
    ("path", "headers"),
    [
        ("/api/v1/users", {"API-Version": "1.0"}),
        ("/api/users?version=1&version=v1", {}),
        ("/api/users?version=1", {"API-Version": "1", "Accept": VENDOR.format(1)}),
    ],
)
def test_the_same_version_twice_is_fine(client: Any, path: str, headers: dict[str, str]) -> None:
    response = client.get(path, headers=headers)
    assert response.status_code == 200
    assert response.headers["API-Version"] == "1"


def test_accept_q_values_pick_the_preferred_version(client: Any) -> None:
    accept = f"{VENDOR.format(1)};q=0.5, {VENDOR.format(2)};q=0.9, application/json"
    assert client.get("/api/users", headers={"Accept": accept}).headers["API-Version"] == "2"
    accept = f"{VENDOR.format(1)};q=1, {VENDOR.format(2)};q=0.2"
    assert client.get("/api/users", headers={"Accept": accept}).headers["API-Version"] == "1"
    # an unknown version ranked first gives way to a known one
    accept = f"{VENDOR.format(9)}, {VENDOR.format(1)};q=0.1"
    assert client.get("/api/users", headers={"Accept": accept}).headers["API-Version"] == "1"
    # q=0 means "not acceptable": that range names no version
    accept = f"{VENDOR.format(1)};q=0"
    assert client.get("/api/users", headers={"Accept": accept}).headers["API-Version"] == "2"


def test_default_is_the_newest_stable_version(client: Any) -> None:
    response = client.get("/api/users")
    assert response.status_code == 200
    assert response.headers["API-Version"] == "2"  # not 3, a preview


def test_default_can_be_a_label(app_factory: Any) -> None:
    client = app_factory(default="1").test_client()
    assert client.get("/api/users").headers["API-Version"] == "1"


def test_strict_mode_requires_a_version(app_factory: Any) -> None:
    client = app_factory(default=None).test_client()
    assert_problem(client.get("/api/users"), 400, "ApiVersionUnspecified")
    assert client.get("/api/users", headers={"API-Version": "2"}).status_code == 200
    assert client.get("/api/v2/users").status_code == 200


@pytest.mark.parametrize("reader", ["url", "header", "query", "accept"])
def test_route_only_in_another_version(client: Any, reader: str) -> None:
    _method, path, headers = READERS[reader]("1")
    response = client.get(path.replace("/users", "/orders"), headers=headers)
    body = assert_problem(response, 404, "UnsupportedApiVersion")
    assert body["versions"] == ["2"]
    assert response.headers["API-Version"] == "1"


def test_route_in_no_version_is_a_plain_404(client: Any) -> None:
    response = client.get("/api/v2/nothing")
    body = assert_problem(response, 404, None)
    assert "code" not in body
    assert response.headers["API-Version"] == "2"


@pytest.mark.parametrize("reader", ["url", "header", "query"])
def test_method_missing_in_the_version(client: Any, reader: str) -> None:
    _method, path, headers = READERS[reader]("2")
    response = client.delete(path, headers=headers)
    assert_problem(response, 405, None)
    assert set(response.headers["Allow"].split(", ")) == {"GET", "POST", "HEAD", "OPTIONS"}
    assert response.headers["API-Version"] == "2"


@pytest.mark.parametrize("reader", list(READERS))
def test_retired_version_is_never_served(client: Any, reader: str) -> None:
    response = ask(client, reader, "0")
    body = assert_problem(response, 410, "ApiVersionSunset")
    assert body["successor"] == "2"
    assert response.headers["Sunset"] == "Mon, 30 Jun 2025 23:59:59 GMT"
    assert '</api/v2/users>; rel="successor-version"' in response.headers["Link"]
    assert response.headers["API-Version"] == "0"


@pytest.mark.parametrize("reader", list(READERS))
def test_brownout_window(client: Any, clock: Any, reader: str) -> None:
    from datetime import datetime

    clock.now = datetime.fromisoformat("2027-03-01T01:30:00+00:00")
    response = ask(client, reader, "1")
    assert_problem(response, 410, "ApiVersionBrownout")
    assert response.headers["Retry-After"] == "1800"
    assert response.headers["Deprecation"] == "@1767225600"
    # v2 is untouched by v1's brownout
    assert ask(client, reader, "2").status_code in (200, 201)
    # and v1 comes back when the window ends
    clock.now = datetime.fromisoformat("2027-03-01T02:00:00+00:00")
    assert ask(client, reader, "1").status_code in (200, 201)


def test_a_version_retires_when_its_sunset_passes(client: Any, clock: Any) -> None:
    from datetime import datetime

    clock.now = datetime.fromisoformat("2027-06-30T23:59:58+00:00")
    assert client.get("/api/v1/users").status_code == 200
    clock.now = datetime.fromisoformat("2027-06-30T23:59:59+00:00")
    response = client.get("/api/v1/users")
    assert_problem(response, 410, "ApiVersionSunset")
    # no version is deprecated any more: the list is left out
    assert "API-Deprecated-Versions" not in response.headers
    assert response.headers["API-Supported-Versions"] == "2, 3"


@pytest.mark.parametrize(
    ("path", "headers"),
    [
        ("/api/ping", {}),
        ("/api/ping?version=banana", {}),
        ("/api/ping", {"API-Version": "9"}),
        ("/api/ping?version=1", {"API-Version": "2"}),
        ("/api/ping", {"Accept": VENDOR.format(0)}),
        ("/healthz?version=0", {}),
        ("/api/versions?version=banana", {}),
        ("/api/v1/openapi.json", {"API-Version": "2"}),
        ("/docs", {"API-Version": "x"}),
    ],
)
def test_neutral_routes_ignore_versions(client: Any, path: str, headers: dict[str, str]) -> None:
    response = client.get(path, headers=headers)
    assert response.status_code == 200
    for name in ("API-Version", "API-Supported-Versions", "API-Deprecated-Versions", "Sunset"):
        assert name not in response.headers
    assert "Accept" not in response.headers.get("Vary", "")


def test_neutral_view_has_no_current_version(client: Any) -> None:
    assert client.get("/api/ping", headers={"API-Version": "1"}).get_json()["version"] is None


def test_url_version_alias_routes_to_the_canonical_path(client: Any, app: Flask) -> None:
    response = client.get("/api/v1.0/users")
    assert response.status_code == 200
    assert response.headers["API-Version"] == "1"


@pytest.mark.parametrize("path", ["/api/v1.0/openapi.json", "/api/V1/openapi.json"])
def test_a_neutral_route_under_another_spelling_stays_neutral(client: Any, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 200
    assert response.get_json()["info"]["version"] == "1"
    for name in ("API-Version", "Deprecation", "Sunset", "Link"):
        assert name not in response.headers


def test_an_uppercase_v_in_the_path_names_the_version(client: Any) -> None:
    response = client.get("/api/V1/users")
    assert response.status_code == 200
    assert response.headers["API-Version"] == "1"


def test_the_echoed_media_type_is_spelled_canonically(client: Any) -> None:
    response = client.get("/api/users", headers={"Accept": "application/vnd.MyApp.V1+json"})
    assert response.status_code == 200
    assert response.headers["Content-Type"] == VENDOR.format(1)
