"""Setting the extension up: validation at start, init_app, url_for."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Blueprint, Flask

from lockgate import ConfigurationError, Version, Versioning, url_for
from tests.conftest import NOW, Clock, example_versions


def make(versions: list[Version], **options: Any) -> Flask:
    app = Flask("t")
    Versioning(app, versions=versions, clock=Clock(NOW), **options)
    return app


@pytest.mark.parametrize(
    ("versions", "options", "message"),
    [
        ([Version("1"), Version("1.0")], {}, "declared twice"),
        ([Version("1", successor="5"), Version("2")], {}, "successor 5 is not declared"),
        (
            [Version("1", successor="0"), Version("0", sunset="2020-01-01")],
            {},
            "successor 0 is retired",
        ),
        (
            [Version("1", sunset="2030-01-01", successor="2"), Version("2", sunset="2029-01-01")],
            {},
            "successor 2 is retired before it",
        ),
        ([Version("1"), Version("2", status="preview")], {"default": "2"}, "preview"),
        ([Version("1", sunset="2020-01-01"), Version("2")], {"default": "1"}, "retired"),
        ([Version("1")], {"default": "7"}, "not a declared version"),
        ([Version("1", status="preview")], {}, "no stable version"),
        ([], {}, "versions"),
        ([Version("1")], {"readers": ("url", "cookie")}, "cookie"),
    ],
)
def test_startup_fails_with_a_clear_message(
    versions: list[Version], options: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigurationError, match=message):
        make(versions, **options)


def test_registering_twice_on_one_app_fails() -> None:
    app = make([Version("1")])
    with pytest.raises(RuntimeError, match="already registered"):
        Versioning(app, versions=[Version("1")])


def test_blueprint_for_an_undeclared_version_fails() -> None:
    app = Flask("t")
    versioning = Versioning(app, versions=[Version("1")], clock=Clock(NOW))
    with pytest.raises(ConfigurationError, match="not declared"):
        versioning.register_blueprint(Blueprint("x", __name__), version="4")


def test_init_app_later_and_config_keys() -> None:
    versioning = Versioning(versions=example_versions(), clock=Clock(NOW))
    bp = Blueprint("things", __name__)

    @bp.get("/things")
    def things() -> dict[str, str]:
        return {"ok": "yes"}

    versioning.register_blueprint(bp, version="2")
    app = Flask("t")
    app.config.update(LOCKGATE_PREFIX="/svc", LOCKGATE_HEADER="X-Api-Version")
    versioning.init_app(app)
    client = app.test_client()
    response = client.get("/svc/things", headers={"X-Api-Version": "2"})
    assert response.status_code == 200
    assert response.headers["API-Version"] == "2"
    assert "X-Api-Version" in response.headers["Vary"]
    assert client.get("/svc/v2/things").status_code == 200
    assert client.get("/api/v2/things").status_code == 404


def test_init_app_takes_every_setting_of_the_constructor() -> None:
    versioning = Versioning()
    bp = Blueprint("things", __name__)

    @bp.get("/things")
    def things() -> dict[str, str]:
        return {"ok": "yes"}

    versioning.register_blueprint(bp, versions=("1", "2"))
    app = Flask("t")
    versioning.init_app(
        app,
        versions=[Version("1", deprecated="2026-01-01", successor="2"), Version("2")],
        vendor="myapp",
        default=None,
        readers=("url", "media_type", "query"),
        header="X-Api-Version",
        query="v",
        prefix="/svc",
        clock=Clock(NOW),
    )
    client = app.test_client()
    assert client.get("/svc/things").get_json()["code"] == "ApiVersionUnspecified"
    assert client.get("/svc/things?v=1").headers["API-Version"] == "1"
    by_media_type = client.get("/svc/things", headers={"Accept": "application/vnd.myapp.v1+json"})
    assert by_media_type.headers["Content-Type"] == "application/vnd.myapp.v1+json"
    # The header reader is off: the header alone names no version.
    unread = client.get("/svc/things", headers={"X-Api-Version": "1"})
    assert unread.status_code == 400


def test_init_app_settings_win_over_the_constructors() -> None:
    versioning = Versioning(versions=[Version("1")], prefix="/one")
    app = Flask("t")
    versioning.init_app(app, prefix="/two", versions=[Version("3")])
    state = app.extensions["lockgate"]
    assert state.prefix == "/two"
    assert [v.label.text for v in state.bundle.versions] == ["3"]


def test_constructor_arguments_win_over_config() -> None:
    app = Flask("t")
    app.config["LOCKGATE_PREFIX"] = "/config"
    Versioning(app, versions=[Version("1")], prefix="/args", clock=Clock(NOW))
    assert app.extensions["lockgate"].prefix == "/args"


def test_url_for_follows_the_clients_scheme(client: Any) -> None:
    assert client.get("/api/v1/users").get_json()["self"] == "/api/v1/users/7"
    assert client.get("/api/users").get_json()["self"] == "/api/users/7"
    header = client.get("/api/users", headers={"API-Version": "1"})
    assert header.get_json()["self"] == "/api/users/7"
    assert header.get_json()["version"] == "1"
    assert client.get("/api/users?version=1").get_json()["self"] == "/api/users/7?version=1"


def test_url_for_another_version(app: Flask) -> None:
    with app.test_request_context("/api/v1/users"):
        assert url_for("users.get_user", id=3, _version="2") == "/api/v2/users/3"


def test_one_blueprint_serves_several_versions(client: Any) -> None:
    for label in ("1", "2", "3"):
        response = client.get(f"/api/v{label}/users/1")
        assert response.get_json() == {"id": 1, "version": label}


def test_neutral_blueprint(app_factory: Any) -> None:
    app = app_factory()
    status = Versioning().neutral(Blueprint("status", __name__, url_prefix="/api/status"))

    @status.get("")
    def show() -> dict[str, bool]:
        return {"up": True}

    app.register_blueprint(status)
    response = app.test_client().get("/api/status?version=banana")
    assert response.status_code == 200
    assert "API-Version" not in response.headers


def test_a_misspelt_setting_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="prefx"):
        Versioning(versions=[Version("1")], prefx="/svc")  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="vendr"):
        Versioning().init_app(Flask("t"), versions=[Version("1")], vendr="x")  # type: ignore[call-arg]
