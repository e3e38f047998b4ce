"""Access-token verification against forged, broken and foreign tokens (RFC 8725).

Real keys (Ed25519, made by :class:`KeyStore`), real tokens (PyJWT), a real
Flask app with :class:`Auth`; every forgery is refused with a 401 problem,
never a 5xx.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from flask import Blueprint, Flask

from lockgate.auth import Auth, InvalidToken, KeyStore, current_client, require_scope
from lockgate.auth.verify import FileLoader
from tests.tokens import AUDIENCE, ISSUER, claims, mint


@pytest.fixture
def store(tmp_path: Path) -> KeyStore:
    return KeyStore(tmp_path / "keys", retain=timedelta(minutes=11))


@pytest.fixture
def app(store: KeyStore) -> Flask:
    app = Flask("protected")
    Auth(app, issuer=ISSUER, audience=AUDIENCE, jwks=store.jwks)
    bp = Blueprint("things", __name__)

    @bp.get("/things")
    def things() -> Any:
        client = current_client()
        assert client is not None
        return {"client": client.client_id, "scopes": sorted(client.scopes)}

    @bp.post("/things")
    def make() -> Any:
        return {"made": True}, 201

    require_scope("users:read", methods=["GET"])(bp)
    require_scope("users:write", methods=["POST"])(bp)
    app.register_blueprint(bp)
    return app


def reader_app(jwks: Callable[[], Any]) -> Flask:
    """An app whose ``GET /things`` needs ``users:read``, with keys from ``jwks``."""
    app = Flask("reader")
    Auth(app, issuer=ISSUER, audience=AUDIENCE, jwks=jwks)

    @app.get("/things")
    @require_scope("users:read")
    def things() -> Any:
        return {}

    return app


def call(app: Flask, token: str | None, method: str = "GET") -> Any:
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    return app.test_client().open("/things", method=method, headers=headers)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def test_a_valid_token_names_the_client(app: Flask, store: KeyStore) -> None:
    response = call(app, mint(store))
    assert response.status_code == 200
    assert response.get_json() == {"client": "client-1", "scopes": ["users:read"]}


def _none(store: KeyStore) -> str:
    header = {"alg": "none", "typ": "at+jwt", "kid": store.current().kid}
    return f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims()).encode())}."


def _hs256_with_public_key(store: KeyStore) -> str:
    public = store.current().private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    header = {"alg": "HS256", "typ": "at+jwt", "kid": store.current().kid}
    signing = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims()).encode())}"
    import hashlib
    import hmac

    signature = hmac.new(public, signing.encode(), hashlib.sha256).digest()
    return f"{signing}.{b64(signature)}"


def _foreign_key(store: KeyStore, kid: str | None = None, **headers: Any) -> str:
    attacker = Ed25519PrivateKey.generate()
    return jwt.encode(
        claims(),
        attacker,
        algorithm="EdDSA",
        headers={"kid": kid or store.current().kid, "typ": "at+jwt", **headers},
    )


def _embedded_jwk(store: KeyStore) -> str:
    attacker = Ed25519PrivateKey.generate()
    jwk = jwt.algorithms.OKPAlgorithm.to_jwk(attacker.public_key(), as_dict=True)
    return jwt.encode(
        claims(), attacker, algorithm="EdDSA", headers={"kid": "evil", "typ": "at+jwt", "jwk": jwk}
    )


def _tampered_payload(store: KeyStore) -> str:
    header, _, signature = mint(store).split(".")
    forged = b64(json.dumps(claims(scope="users:read users:write admin")).encode())
    return f"{header}.{forged}.{signature}"


def _tampered_signature(store: KeyStore) -> str:
    header, payload, signature = mint(store).split(".")
    flipped = signature[:-2] + ("AA" if signature[-2:] != "AA" else "BB")
    return f"{header}.{payload}.{flipped}"


FORGERIES: dict[str, Callable[[KeyStore], str]] = {
    "alg none": _none,
    "HS256 signed with the public key": _hs256_with_public_key,
    "a key the issuer never had": _foreign_key,
    "an unknown kid": lambda s: _foreign_key(s, kid="nobody"),
    "jku to an attacker's keys": lambda s: _foreign_key(s, jku="http://127.0.0.1:9/jwks.json"),
    "embedded jwk": _embedded_jwk,
    "tampered payload": _tampered_payload,
    "tampered signature": _tampered_signature,
    "expired": lambda s: mint(s, iat=int(time.time()) - 1200, exp=int(time.time()) - 600),
    "nbf in the future": lambda s: mint(s, nbf=int(time.time()) + 600),
    "iat in the future": lambda s: mint(s, iat=int(time.time()) + 600),
    "wrong iss": lambda s: mint(s, iss="http://evil.example"),
    "wrong aud": lambda s: mint(s, aud="orders"),
    "missing exp": lambda s: mint(s, exp=None),
    "missing sub": lambda s: mint(s, sub=None),
    "typ JWT": lambda s: mint(s, headers={"typ": "JWT"}),
    "five segments (JWE)": lambda s: "a.b.c.d.e",
    "malformed base64": lambda s: "%%%.***.!!!",
    "an 8 KiB+ token": lambda s: mint(s, padding="x" * 9000),
    "empty": lambda s: "",
}


@pytest.mark.parametrize("name", sorted(FORGERIES))
def test_every_forgery_is_refused_with_401(app: Flask, store: KeyStore, name: str) -> None:
    response = call(app, FORGERIES[name](store))
    assert response.status_code == 401, (name, response.get_data(as_text=True))
    assert response.mimetype == "application/problem+json"
    assert response.get_json()["code"] == "invalid_token"
    assert response.headers["WWW-Authenticate"].startswith('Bearer error="invalid_token"')


def test_an_oversized_authorization_header_is_401_not_5xx(app: Flask) -> None:
    response = call(app, "a" * 20000)
    assert response.status_code == 401


def test_no_token_is_401_and_the_wrong_scope_403(app: Flask, store: KeyStore) -> None:
    missing = call(app, None)
    assert missing.status_code == 401
    assert "invalid_token" in missing.headers["WWW-Authenticate"]
    forbidden = call(app, mint(store), method="POST")
    assert forbidden.status_code == 403
    assert forbidden.get_json()["code"] == "insufficient_scope"
    assert forbidden.get_json()["scope"] == "users:write"
    assert forbidden.headers["WWW-Authenticate"] == (
        'Bearer error="insufficient_scope", scope="users:write"'
    )
    allowed = call(app, mint(store, scope="users:read users:write"), method="POST")
    assert allowed.status_code == 201


def test_a_token_before_rotation_works_until_it_expires_and_the_new_key_at_once(
    store: KeyStore,
) -> None:
    fetches: list[int] = []

    def counted() -> Any:
        fetches.append(1)
        return store.jwks()

    app = reader_app(counted)

    before = mint(store)
    assert call(app, before).status_code == 200
    store.rotate()
    after = mint(store)
    assert jwt.get_unverified_header(after)["kid"] != jwt.get_unverified_header(before)["kid"]
    # The key that signs now was published before it signed: no refetch needed.
    assert call(app, after).status_code == 200
    assert len(fetches) == 1
    assert call(app, before).status_code == 200  # the retired key is still published
    published = {k["kid"] for k in store.jwks()["keys"]}
    assert {jwt.get_unverified_header(t)["kid"] for t in (before, after)} < published
    assert len(published) == 3  # retired, signing, next


def test_two_rotations_in_a_row_need_no_wait_with_the_issuers_file(store: KeyStore) -> None:
    """Read from the key directory's jwks.json (the one-machine fleet), a
    changed file is read again at once for an unknown kid; an unchanged one
    waits the refetch interval like a URL."""
    first = mint(store)
    app = Flask("file-reader")
    app.config["LOCKGATE_AUTH_JWKS_FILE"] = str(store.directory / "jwks.json")
    Auth(app, issuer=ISSUER, audience=AUDIENCE)
    verifier = app.extensions["lockgate.auth"]
    assert isinstance(verifier.keys.load, FileLoader)
    assert verifier.verify(first).client_id == "client-1"
    store.rotate()
    store.rotate()  # the key signing now was made by the first rotation, after the read
    assert verifier.verify(mint(store)).client_id == "client-1"
    # A kid the file does not hold, with the file unchanged: no reread.
    reads: list[int] = []
    loader = verifier.keys.load
    verifier.keys.load = lambda: reads.append(1) or loader()
    verifier.keys.load.changed = loader.changed  # type: ignore[attr-defined]
    stranger = jwt.encode(
        claims(),
        Ed25519PrivateKey.generate(),
        algorithm="EdDSA",
        headers={"kid": "nobody", "typ": "at+jwt"},
    )
    for _ in range(3):
        with pytest.raises(InvalidToken):
            verifier.verify(stranger)
    assert reads == []


def test_a_retired_key_leaves_the_jwks_once_its_tokens_expired(store: KeyStore) -> None:
    from datetime import UTC, datetime

    first = store.current()
    store.rotate()
    later = datetime.now(UTC) + timedelta(minutes=12)  # past retain (11 minutes)
    assert first.kid not in {k["kid"] for k in store.jwks(later)["keys"]}
    store.rotate(later)
    assert not (store.directory / f"{first.kid}.pem").exists()


def test_unknown_kids_do_not_storm_the_jwks(store: KeyStore) -> None:
    fetches: list[int] = []

    def counted() -> Any:
        fetches.append(1)
        return store.jwks()

    app = reader_app(counted)

    client = app.test_client()
    for number in range(50):
        forged = _foreign_key(store, kid=f"forged-{number}")
        assert (
            client.get("/things", headers={"Authorization": f"Bearer {forged}"}).status_code == 401
        )
    assert len(fetches) == 1


def test_a_failed_jwks_fetch_keeps_the_known_keys(store: KeyStore) -> None:
    state = {"up": True}

    def flaky() -> Any:
        if not state["up"]:
            raise OSError("the auth service is down")
        return store.jwks()

    app = reader_app(flaky)

    token = mint(store)
    client = app.test_client()
    assert client.get("/things", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    state["up"] = False
    verifier = app.extensions["lockgate.auth"]
    verifier.keys.refresh()  # fails: the keys stay
    verifier.cache.clear()
    assert client.get("/things", headers={"Authorization": f"Bearer {token}"}).status_code == 200


def test_private_keys_are_mode_0600(store: KeyStore) -> None:
    key = store.current()
    path = store.directory / f"{key.kid}.pem"
    assert path.stat().st_mode & 0o777 == 0o600
    assert "d" not in store.jwks()["keys"][0]  # never the private part


def test_two_clients_behind_one_address_each_get_their_own_budget(store: KeyStore) -> None:
    """The runtime's limiter counts by the verified client_id, not the IP."""
    from lockgate import Version, Versioning
    from lockgate.runtime import Runtime

    app = Flask("budget")
    app.config.update(LOCKGATE_RATE_LIMIT="3/minute", LOCKGATE_SERVICE="budget")
    versioning = Versioning(app, versions=[Version("1")])
    Auth(app, issuer=ISSUER, audience=AUDIENCE, jwks=store.jwks)
    bp = Blueprint("things", __name__)

    @bp.get("/things")
    @require_scope("users:read")
    def things() -> Any:
        return {}

    versioning.register_blueprint(bp, version="1")
    Runtime(app)
    client = app.test_client()
    tokens = [mint(store, sub=name, client_id=name) for name in ("alpha", "beta")]
    for token in tokens:  # one address, two clients: three each
        for _ in range(3):
            answer = client.get("/api/v1/things", headers={"Authorization": f"Bearer {token}"})
            assert answer.status_code == 200
    assert (
        client.get("/api/v1/things", headers={"Authorization": f"Bearer {tokens[0]}"}).status_code
        == 429
    )


def test_a_key_past_retention_leaves_jwks_json_without_waiting_for_a_rotation(
    store: KeyStore,
) -> None:
    """The file verifiers on one machine read drops it as soon as the issuer
    signs again, so a key rotated out (leaked, say) is not trusted from it."""
    from datetime import UTC, datetime

    first = store.current()
    store.rotate()
    public = store.directory / "jwks.json"
    assert first.kid in public.read_text()
    later = datetime.now(UTC) + timedelta(minutes=12)  # past retain (11 minutes)
    store.current(later)  # the issuer signs a token: no rotation
    assert first.kid not in public.read_text()
    assert not (store.directory / f"{first.kid}.pem").exists()
