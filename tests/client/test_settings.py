"""Where the target lives and which settings a call uses."""

from __future__ import annotations

from pathlib import Path

import pytest
from flask import Flask

from lockgate.client import BreakerSettings, ServiceClient, Timeouts
from lockgate.client.service import sf_string
from lockgate.errors import ConfigurationError

FLEET = """
[fleet]
name = "f"
default = "users"

[services.users]
app = "services.users:create_app"
"""


@pytest.fixture(autouse=True)
def clean(monkeypatch: pytest.MonkeyPatch) -> None:
    for variable in ("LOCKGATE_SERVICE_URL_USERS", "LOCKGATE_FLEET_URL", "LOCKGATE_FLEET"):
        monkeypatch.delenv(variable, raising=False)
    for key in ("CONNECT_TIMEOUT", "READ_TIMEOUT", "DEADLINE", "BREAKER_FAILURES", "BREAKER_RESET"):
        monkeypatch.delenv(f"LOCKGATE_CLIENT_{key}", raising=False)


def test_the_services_own_variable_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOCKGATE_SERVICE_URL_USERS", "http://10.0.0.5:8000/")
    monkeypatch.setenv("LOCKGATE_FLEET_URL", "http://127.0.0.1:8080")
    assert ServiceClient("users").base_url == "http://10.0.0.5:8000"


def test_else_the_fleets_address_for_a_service_of_the_manifest(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    manifest = tmp_path / "fleet.toml"
    manifest.write_text(FLEET)
    monkeypatch.setenv("LOCKGATE_FLEET_URL", "http://127.0.0.1:8080")
    monkeypatch.setenv("LOCKGATE_FLEET", str(manifest))
    assert ServiceClient("users").base_url == "http://127.0.0.1:8080"
    with pytest.raises(ConfigurationError, match=r"'userz' is not a service of the fleet"):
        _ = ServiceClient("userz").base_url


def test_no_address_names_both_variables() -> None:
    client = ServiceClient("users")  # building it needs no address yet
    with pytest.raises(ConfigurationError) as raised:
        client.get("/api/v2/users/1")
    assert "LOCKGATE_SERVICE_URL_USERS" in str(raised.value)
    assert "LOCKGATE_FLEET_URL" in str(raised.value)


def test_a_bad_name_is_refused_at_once() -> None:
    with pytest.raises(ConfigurationError):
        ServiceClient("users\nX-Injected: 1")


def test_settings_come_from_the_arguments_then_the_app_then_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert ServiceClient("users").settings() == (Timeouts(), BreakerSettings())
    monkeypatch.setenv("LOCKGATE_CLIENT_DEADLINE", "4")
    monkeypatch.setenv("LOCKGATE_CLIENT_BREAKER_RESET", "9")
    assert ServiceClient("users").settings() == (
        Timeouts(deadline=4.0),
        BreakerSettings(reset=9.0),
    )
    app = Flask("caller")
    app.config.update(
        LOCKGATE_CLIENT_CONNECT_TIMEOUT=0.5,
        LOCKGATE_CLIENT_READ_TIMEOUT=2,
        LOCKGATE_CLIENT_DEADLINE=3,
        LOCKGATE_CLIENT_BREAKER_FAILURES=7,
    )
    with app.app_context():
        timeouts, breaker = ServiceClient("users").settings()
        assert timeouts == Timeouts(connect=0.5, read=2.0, deadline=3.0)
        assert (breaker.failures, breaker.reset) == (7, 9.0)
        given = ServiceClient("users", timeouts=Timeouts(deadline=1.0)).settings()[0]
        assert given == Timeouts(deadline=1.0)
    app.config["LOCKGATE_CLIENT_BREAKER_FAILURES"] = 2.5
    with app.app_context(), pytest.raises(ConfigurationError, match="whole number"):
        ServiceClient("users").settings()


@pytest.mark.parametrize(
    "make",
    [
        lambda: Timeouts(deadline=0),
        lambda: Timeouts(read=float("inf")),
        lambda: BreakerSettings(rate=1.5),
        lambda: BreakerSettings(failures=0),
    ],
)
def test_impossible_settings_are_refused(make: object) -> None:
    with pytest.raises(ConfigurationError):
        make()  # type: ignore[operator]


def test_idempotency_keys_are_structured_field_strings() -> None:
    assert sf_string("k-1") == '"k-1"'
    assert sf_string('a"b\\c') == '"a\\"b\\\\c"'
    with pytest.raises(ValueError, match="printable ASCII"):
        sf_string("k\n1")


def test_the_client_keeps_timeouts_auth_and_extensions_to_itself() -> None:
    client = ServiceClient("users", base_url="http://127.0.0.1:9")
    with pytest.raises(TypeError, match="timeout"):
        client.get("/x", timeout=30)
