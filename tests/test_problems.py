"""Every error is one RFC 9457 problem+json shape."""

from __future__ import annotations

from typing import Any

from flask import Flask

from lockgate import Problem, Version, Versioning


def test_plain_http_errors_are_problems(client: Any) -> None:
    response = client.get("/nowhere")
    assert response.status_code == 404
    assert response.mimetype == "application/problem+json"
    assert response.get_json()["type"] == "about:blank"
    assert response.get_json()["title"] == "Not Found"


def test_views_raise_problems_with_members(clock: Any) -> None:
    app = Flask("t")
    Versioning(app, versions=[Version("1")], clock=clock)

    @app.get("/boom")
    def boom() -> None:
        raise Problem(
            422, "bad fields", code="ValidationFailed", errors=[{"field": "a", "message": "b"}]
        )

    @app.get("/crash")
    def crash() -> None:
        raise RuntimeError("secret internals")

    client = app.test_client()
    body = client.get("/boom").get_json()
    assert body["status"] == 422
    assert body["code"] == "ValidationFailed"
    assert body["type"] == "https://lockgate.dev/problems/validation-failed"
    assert body["errors"] == [{"field": "a", "message": "b"}]
    failed = client.get("/crash")
    assert failed.status_code == 500
    assert failed.mimetype == "application/problem+json"
    assert "secret" not in failed.get_data(as_text=True)


def test_instance_is_the_path_the_client_asked_for(client: Any) -> None:
    refused = client.get("/api/users?version=banana").get_json()
    assert refused["instance"] == "/api/users"
    rewritten = client.get("/api/orders", headers={"API-Version": "1"}).get_json()
    assert rewritten["instance"] == "/api/orders"
    assert rewritten["code"] == "UnsupportedApiVersion"
    assert client.get("/api/v2/nothing").get_json()["instance"] == "/api/v2/nothing"
