"""Allowed hosts, relative router redirects and ``nosniff`` on every response."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask

from lockgate.runtime.security import relative_location, trusted_hosts

PROBLEM = "application/problem+json"


def logged(stream: io.StringIO, request_id: str) -> list[dict[str, Any]]:
    records = [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]
    return [r for r in records if r.get("request_id") == request_id and r["event"] == "request"]


def test_nosniff_on_every_kind_of_response(make_app: Callable[..., Flask]) -> None:
    app = make_app(PROPAGATE_EXCEPTIONS=False)

    @app.get("/boom")
    def boom() -> Any:
        raise RuntimeError("a bug")

    client = app.test_client()
    answers = {
        "ok": client.get("/api/v2/things"),
        "cached again": client.get("/api/v2/things"),
        "not modified": client.get(
            "/api/v2/things",
            headers={"If-None-Match": client.get("/api/v2/things").headers["ETag"]},
        ),
        "unversioned 404": client.get("/nowhere"),
        "versioned 404": client.get("/api/v2/nowhere"),
        "405": client.delete("/api/v2/things"),
        "bad version": client.get("/api/things", headers={"API-Version": "banana"}),
        "retired": client.get("/api/v0/things"),
        "500": client.get("/boom"),
        "liveness": client.get("/healthz"),
        "readiness": client.get("/readyz"),
        "metrics": client.get("/metrics"),
        "document": client.get("/api/v2/openapi.json"),
        "docs": client.get("/docs"),
        "redirect": client.get("/api/v2//things"),
    }
    assert answers["500"].status_code == 500
    assert answers["not modified"].status_code == 304
    for name, response in answers.items():
        assert response.headers.get_all("X-Content-Type-Options") == ["nosniff"], name


def test_a_view_that_says_nosniff_itself_is_not_repeated(make_app: Callable[..., Flask]) -> None:
    app = make_app()

    @app.get("/own")
    def own() -> Any:
        return "x", 200, {"X-Content-Type-Options": "nosniff"}

    response = app.test_client().get("/own")
    assert response.headers.get_all("X-Content-Type-Options") == ["nosniff"]


@pytest.mark.parametrize(
    ("path", "location"),
    [
        ("/api/v2//things", "/api/v2/things"),
        ("/api/v2///things?b=2&a=1", "/api/v2/things?b=2&a=1"),
        ("/api/v1//things?x=%2F", "/api/v1/things?x=%2F"),
    ],
)
def test_the_slash_merging_redirect_is_relative_and_bare(
    make_app: Callable[..., Flask], logs: io.StringIO, path: str, location: str
) -> None:
    client = make_app().test_client()
    # A full URL: the test client would read "//api" as a host.
    url = f"http://evil.example{path}"
    response = client.get(url, headers={"X-Request-ID": "redirect-1"})
    assert response.status_code == 308
    assert response.headers["Location"] == location
    assert "evil.example" not in str(response.headers)
    assert response.data == b""
    assert "Content-Type" not in response.headers
    assert response.headers["X-Request-ID"] == "redirect-1"
    assert [r["status"] for r in logged(logs, "redirect-1")] == [308]
    # Following it lands on the route (the test client resolves it against the request URL).
    followed = client.get(url, follow_redirects=True)
    assert followed.status_code == 200
    assert followed.get_json()["version"] == int(location[6])


def test_an_untrusted_host_is_a_400_problem(
    make_app: Callable[..., Flask], logs: io.StringIO
) -> None:
    client = make_app(LOCKGATE_TRUSTED_HOSTS="good.example, .corp.example").test_client()
    for host in ("good.example", "good.example:8080", "api.corp.example"):
        assert client.get("/api/v2/things", headers={"Host": host}).status_code == 200, host
    for path in ("/api/v2/things", "/api/v2//things", "/healthz", "/nowhere"):
        response = client.get(f"http://evil.example{path}", headers={"X-Request-ID": "evil-1"})
        assert response.status_code == 400, path
        assert response.mimetype == PROBLEM
        body = response.get_json()
        assert body["status"] == 400
        assert "Location" not in response.headers
        assert response.headers["X-Request-ID"] == "evil-1"
        assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert [r["status"] for r in logged(logs, "evil-1")] == [400] * 4


def test_without_a_list_any_host_is_served(make_app: Callable[..., Flask]) -> None:
    app = make_app()
    assert app.config["TRUSTED_HOSTS"] is None
    response = app.test_client().get("/api/v2/things", headers={"Host": "anything.example"})
    assert response.status_code == 200


def test_trusted_hosts_setting() -> None:
    assert trusted_hosts(None) is None
    assert trusted_hosts("a.example,b.example  .c.example") == [
        "a.example",
        "b.example",
        ".c.example",
    ]
    assert trusted_hosts(["a.example", " b.example "]) == ["a.example", "b.example"]
    for bad in ("", " , ", [], [1], 5):
        with pytest.raises(ValueError, match="LOCKGATE_TRUSTED_HOSTS"):
            trusted_hosts(bad)


def test_relative_location() -> None:
    assert relative_location("http://evil.example/api/v2/things?x=1") == "/api/v2/things?x=1"
    assert relative_location("http://evil.example") == "/"
    assert relative_location("/a/b") == "/a/b"
