"""`lockgate run` as an HTTP server: what the development server adds to answers."""

from __future__ import annotations

import json
import socket

import pytest

from tests.servers import Fleet


@pytest.mark.parametrize("path", ["/api/v2/users", "/api/v1/users", "/healthz", "/api/versions"])
def test_one_date_header(fleet: Fleet, path: str) -> None:
    """RFC 9110 6.6.1: one Date, though the cache layer and Werkzeug both write one."""
    response = fleet.http.get(path)
    assert response.status_code == 200
    assert len(response.headers.get_list("date")) == 1
    again = fleet.http.get(path, headers={"If-None-Match": response.headers["etag"]})
    assert again.status_code == 304
    assert len(again.headers.get_list("date")) == 1


def test_server_header_names_no_version(fleet: Fleet) -> None:
    """Werkzeug's own `Server` names its version and Python's; ours names neither."""
    response = fleet.http.get("/healthz")
    assert response.headers.get_list("server") == ["Werkzeug"]
    missing = fleet.http.get("/nowhere")  # an error page, written through the same handler
    assert missing.headers.get_list("server") == ["Werkzeug"]


def test_an_unreadable_chunked_body_is_a_400(fleet: Fleet) -> None:
    host, _, port = fleet.base.removeprefix("http://").rpartition(":")
    token = fleet.token("users:write").encode()
    request = (
        b"POST /api/v2/users HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Authorization: Bearer " + token + b"\r\n"
        b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\nzz\r\n{}\r\n0\r\n\r\n"
    )
    received = b""
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(request)
        while chunk := sock.recv(65536):
            received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    assert lines[0].split()[1] == "400", received
    assert "Content-Type: application/problem+json" in lines
    assert json.loads(body)["status"] == 400
