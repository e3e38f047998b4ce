"""Reading JSON bodies: the limit holds for chunked bodies, and only RFC 8259 JSON parses."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
from flask import Flask, jsonify, request
from flask.testing import FlaskClient
from pydantic import BaseModel, ConfigDict

from lockgate import Version, Versioning
from lockgate.bodies import read_json
from tests.conftest import Clock

LIMIT = 64
JSON = {"Content-Type": "application/json"}


class Note(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: str


@pytest.fixture
def client(clock: Clock) -> FlaskClient:
    app = Flask("bodies")
    app.config.update(TESTING=True, MAX_CONTENT_LENGTH=LIMIT)
    Versioning(app, versions=[Version("1")], clock=clock)

    @app.post("/notes")
    def create_note() -> Any:
        declared = request.environ.get("CONTENT_LENGTH")
        note = read_json(Note)
        # Whoever reads the body next gets all of it too.
        return jsonify(**note.model_dump(), declared=declared, raw=request.get_data(as_text=True))

    @app.post("/notes/peek")
    def peek_then_create() -> Any:
        raw = request.get_data(as_text=True)
        return jsonify(**read_json(Note).model_dump(), raw=raw)

    return app.test_client()


def note_of_size(size: int) -> bytes:
    """A valid note body exactly ``size`` bytes long."""
    body = json.dumps({"text": ""}).encode()
    return json.dumps({"text": "x" * (size - len(body))}).encode()


def post_chunked(client: FlaskClient, body: bytes) -> Any:
    """Post without Content-Length, as a server hands over a chunked body."""
    response = client.post(
        "/notes",
        headers={**JSON, "Transfer-Encoding": "chunked"},
        environ_overrides={"wsgi.input": io.BytesIO(body), "wsgi.input_terminated": True},
    )
    if response.status_code == 200:
        assert response.get_json()["declared"] is None
    return response


def assert_too_large(response: Any) -> None:
    assert response.status_code == 413
    assert response.mimetype == "application/problem+json"
    problem = response.get_json()
    assert problem["code"] == "PayloadTooLarge"
    assert problem["type"] == "https://lockgate.dev/problems/payload-too-large"
    assert str(LIMIT) in problem["detail"]


def test_a_chunked_body_over_the_limit_is_refused_not_truncated(client: FlaskClient) -> None:
    response = post_chunked(client, note_of_size(LIMIT + 1))
    assert_too_large(response)


def test_a_chunked_body_at_the_limit_is_read_whole(client: FlaskClient) -> None:
    body = note_of_size(LIMIT)
    response = post_chunked(client, body)
    assert response.status_code == 200, response.get_data(as_text=True)
    answer = response.get_json()
    assert answer["text"] == json.loads(body)["text"]
    assert answer["raw"] == body.decode()


def test_the_body_stays_readable_before_and_after(client: FlaskClient) -> None:
    body = note_of_size(LIMIT - 4)
    after = client.post("/notes", data=body, headers=JSON).get_json()
    assert after["raw"] == body.decode()
    assert after["declared"] == str(len(body))
    before = client.post("/notes/peek", data=body, headers=JSON)
    assert before.status_code == 200, before.get_data(as_text=True)
    assert before.get_json()["raw"] == body.decode()


def test_a_declared_length_over_the_limit_is_the_same_problem(client: FlaskClient) -> None:
    assert_too_large(client.post("/notes", data=note_of_size(LIMIT + 1), headers=JSON))
    assert client.post("/notes", data=note_of_size(LIMIT), headers=JSON).status_code == 200


@pytest.mark.parametrize(
    "body",
    [
        b'{"text": NaN}',
        b'{"text": Infinity}',
        b'{"text": -Infinity}',
        b'{"text": "a", "text": "b"}',
        b'{"text": "a", "more": [{"k": 1, "k": 1}]}',
    ],
)
def test_json_that_rfc_8259_does_not_allow_or_that_is_ambiguous(
    client: FlaskClient, body: bytes
) -> None:
    response = client.post("/notes", data=body, headers=JSON)
    assert response.status_code == 400
    assert response.get_json()["code"] == "MalformedJson"


def test_the_refusal_names_the_repeated_key(client: FlaskClient) -> None:
    response = client.post("/notes", data=b'{"text": "a", "text": "b"}', headers=JSON)
    assert "'text'" in response.get_json()["detail"]


@pytest.mark.parametrize(
    "text", ['"\\ud800"', '"x\\udfff"', '"\\ud83d \\ude00"', '"\\udc00\\ud800"'], ids=str
)
def test_a_lone_surrogate_is_malformed(client: FlaskClient, text: str) -> None:
    response = client.post("/notes", data=f'{{"text": {text}}}'.encode(), headers=JSON)
    assert response.status_code == 400
    assert response.get_json()["code"] == "MalformedJson"
    assert "surrogate" in response.get_json()["detail"]


def test_an_escaped_pair_is_one_character(client: FlaskClient) -> None:
    for body in (
        b'{"text": "\\ud83d\\ude00"}',
        '{"text": "\U0001f600"}'.encode(),
        b'{"text": "\\u00e9"}',
    ):
        response = client.post("/notes", data=body, headers=JSON)
        assert response.status_code == 200, body
    assert response.get_json()["text"] == "\u00e9"
