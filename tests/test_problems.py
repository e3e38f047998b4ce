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
