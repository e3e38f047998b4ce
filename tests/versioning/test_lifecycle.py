"""Version and lifecycle headers on every response of a versioned route."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest
from werkzeug.http import parse_date

from tests.conftest import POLICY

VENDOR = "application/vnd.myapp.v{}+json"
DEPRECATION_V1 = "@1767225600"  # 2026-01-01T00:00:00Z
SUNSET_V1 = "Wed, 30 Jun 2027 23:59:59 GMT"


def links(response: Any) -> list[str]:
    return [part.strip() for part in response.headers.get("Link", "").split(",") if part.strip()]


def test_version_lists_on_every_versioned_response(client: Any) -> None:
    for path in ("/api/v2/users", "/api/users", "/api/v1/users", "/api/v2/nothing"):
        response = client.get(path)
        assert response.headers["API-Supported-Versions"] == "2, 3"
        assert response.headers["API-Deprecated-Versions"] == "1"


def test_errors_before_negotiation_still_carry_the_lists(client: Any) -> None:
    response = client.get("/api/users?version=banana")
    assert response.status_code == 400
    assert response.headers["API-Supported-Versions"] == "2, 3"
    assert "API-Version" not in response.headers


@pytest.mark.parametrize(
    "headers", [{}, {"API-Version": "2"}, {"Accept": VENDOR.format(2)}, {"Accept": "*/*"}]
)
def test_unversioned_path_varies_on_accept_and_the_header(
    client: Any, headers: dict[str, str]
) -> None:
    vary = {v.strip() for v in client.get("/api/users", headers=headers).headers["Vary"].split(",")}
    assert {"Accept", "API-Version"} <= vary


def test_versioned_path_does_not_vary(client: Any) -> None:
    assert "Vary" not in client.get("/api/v2/users").headers


def test_media_type_comes_back(client: Any) -> None:
    response = client.get("/api/users", headers={"Accept": VENDOR.format(1)})
    assert response.headers["Content-Type"] == VENDOR.format(1)
    response = client.get("/api/users", headers={"Accept": "application/vnd.myapp+json; version=2"})
    assert response.headers["Content-Type"] == "application/vnd.myapp+json; version=2"
    assert client.get("/api/users").headers["Content-Type"] == "application/json"
    # an error stays problem+json whatever was asked
    response = client.get("/api/nothing", headers={"Accept": VENDOR.format(2)})
    assert response.headers["Content-Type"] == "application/problem+json"


def test_deprecated_version_headers(client: Any) -> None:
    response = client.get("/api/v1/users/5")
    assert response.status_code == 200
    assert response.headers["Deprecation"] == DEPRECATION_V1
    assert response.headers["Sunset"] == SUNSET_V1
    assert parse_date(response.headers["Sunset"]) == datetime.fromisoformat(
        "2027-06-30T23:59:59+00:00"
    )
    assert f'<{POLICY}>; rel="deprecation"; type="text/html"' in links(response)
    assert '</api/v2/users/5>; rel="successor-version"' in links(response)


def test_deprecation_headers_on_errors_too(client: Any) -> None:
    for response in (client.delete("/api/v1/users"), client.get("/api/v1/nothing")):
        assert response.status_code in (404, 405)
        assert response.headers["Deprecation"] == DEPRECATION_V1
        assert response.headers["Sunset"] == SUNSET_V1


def test_successor_link_only_where_the_successor_has_the_route(app_and_versioning: Any) -> None:
    from flask import Blueprint

    app, versioning = app_and_versioning
    extra = Blueprint("legacy", __name__)

    @extra.get("/legacy")
    def legacy() -> dict[str, bool]:
        return {"ok": True}

    versioning.register_blueprint(extra, version="1")
    response = app.test_client().get("/api/v1/legacy")
    assert response.status_code == 200
    assert response.headers["Deprecation"] == DEPRECATION_V1
    assert not any("successor-version" in link for link in links(response))
    assert any('rel="deprecation"' in link for link in links(response))


def test_deprecation_changes_no_body(client: Any) -> None:
    v1 = client.get("/api/v1/users/5").get_json()
    v2 = client.get("/api/v2/users/5").get_json()
    assert v1 == {"id": 5, "version": "1"}
    assert v2 == {"id": 5, "version": "2"}


def test_current_version_has_no_deprecation_headers(client: Any) -> None:
    response = client.get("/api/v2/users")
    for name in ("Deprecation", "Sunset", "Link"):
        assert name not in response.headers
    assert response.headers["API-Version"] == "2"


def test_deprecation_is_announced_before_it_arrives(clock: Any, client: Any) -> None:
    clock.now = datetime.fromisoformat("2025-12-01T00:00:00+00:00")
    response = client.get("/api/v1/users")
    assert response.headers["Deprecation"] == DEPRECATION_V1
    assert response.headers["API-Deprecated-Versions"] == "1"


def test_view_links_are_kept(app_and_versioning: Any) -> None:
    from flask import Blueprint

    app, versioning = app_and_versioning
    extra = Blueprint("paged", __name__)

    @extra.get("/paged")
    def paged() -> Any:
        return {"ok": True}, 200, {"Link": '</api/v1/paged?page=2>; rel="next"'}

    versioning.register_blueprint(extra, versions=("1", "2"))
    found = links(app.test_client().get("/api/v1/paged"))
    assert '</api/v1/paged?page=2>; rel="next"' in found
    assert '</api/v2/paged>; rel="successor-version"' in found
