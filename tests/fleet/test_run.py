"""`lockgate run` as an HTTP server: what the development server adds to answers."""

from __future__ import annotations

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
