"""Identity across the running fleet: `lockgate run` over real HTTP on 127.0.0.1.

Forged and broken tokens against the users service (RFC 8725, RFC 6750
answers), a key rotation while both services run, the users API's limits per
verified client, the token endpoint's budgets per client id and per address,
and the development client printed on the first start only.

Tokens with one wrong claim are signed with the fleet's own private key, read
from its data directory, so the claim is the only thing wrong with them
(:func:`test_a_token_signed_with_the_fleets_key_is_accepted` is the control).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    PublicFormat,
    load_pem_private_key,
)

from tests.servers import (
    LOCKGATE,
    ROOT,
    Fleet,
    development_client,
    free_port,
    running_fleet,
    stop,
    token_for,
    unique_email,
    wait_until_up,
)

USERS = "/api/v2/users"
TIMEOUT = 10


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64json(value: Any) -> str:
    return b64(json.dumps(value).encode())


def lockgate(data: Path, *args: str) -> str:
    """Run the `lockgate` CLI on the fleet's data directory; its output."""
    result = subprocess.run(
        [str(LOCKGATE), *args],
        cwd=ROOT,
        env={**os.environ, "LOCKGATE_DATA_DIR": str(data)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def create_client(data: Path, name: str, scopes: str) -> tuple[str, str]:
    """`lockgate clients create`: the new client's id and secret."""
    printed = dict(
        re.findall(
            r"^(client_id|client_secret): (\S+)$",
            lockgate(data, "clients", "create", name, "--scopes", scopes),
            re.MULTILINE,
        )
    )
    return printed["client_id"], printed["client_secret"]


def request_token(base: str, client_id: str, secret: str) -> httpx.Response:
    return httpx.post(
        f"{base}/oauth/token",
        data={"grant_type": "client_credentials", "scope": "users:read"},
        auth=(client_id, secret),
        timeout=TIMEOUT,
    )


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def kid_of(token: str) -> str:
    kid: str = jwt.get_unverified_header(token)["kid"]
    return kid


@contextmanager
def lockgate_run(tmp: Path, env: dict[str, str]) -> Iterator[tuple[str, Path]]:
    """`lockgate run` and its log, without :class:`Fleet`: no token is fetched
    on start (that would spend the token endpoint's budgets) and no secret is
    needed in the log (a second start prints none)."""
    port = free_port()
    tmp.mkdir(parents=True, exist_ok=True)
    path = tmp / "lockgate-run.log"
    base = f"http://127.0.0.1:{port}"
    with path.open("w") as log:
        process = subprocess.Popen(
            [str(LOCKGATE), "run", "--host", "127.0.0.1", "--port", str(port)],
            cwd=ROOT,
            env={**os.environ, **env},
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            wait_until_up(process, base, path)
            yield base, path
        finally:
            stop(process)


# -- The attacker's side: a JWKS of its own, served on 127.0.0.1 -------------------------


class AttackerServer(ThreadingHTTPServer):
    #: Every path requested: a verifier that follows ``jku`` or ``x5u`` shows here.
    fetched: list[str]
    jwks: dict[str, Any]


class AttackerHandler(BaseHTTPRequestHandler):
    server: AttackerServer

    def do_GET(self) -> None:
        self.server.fetched.append(self.path)
        body = json.dumps(self.server.jwks).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # quiet: the test reads ``fetched``


@dataclass
class Attacker:
    key: Ed25519PrivateKey
    kid: str
    url: str
    fetched: list[str]


@pytest.fixture(scope="module")
def attacker() -> Iterator[Attacker]:
    key = Ed25519PrivateKey.generate()
    jwk = jwt.algorithms.OKPAlgorithm.to_jwk(key.public_key(), as_dict=True)
    jwk.update(kid="attacker", use="sig", alg="EdDSA")
    server = AttackerServer(("127.0.0.1", 0), AttackerHandler)
    server.fetched, server.jwks = [], {"keys": [jwk]}
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Attacker(key, "attacker", f"http://127.0.0.1:{server.server_port}", server.fetched)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


# -- The fleet under attack, and tokens forged against it -------------------------------


@dataclass
class Issuer:
    """The module's fleet, its data directory, and a forger of its tokens."""

    fleet: Fleet
    data: Path
    attacker: Attacker
    template: dict[str, Any] = field(default_factory=dict)

    @property
    def keys_dir(self) -> Path:
        return self.data / "auth-keys"

    def signing_key(self) -> tuple[str, Ed25519PrivateKey]:
        """The fleet's signing key now (it changes with a rotation)."""
        index = json.loads((self.keys_dir / "keys.json").read_text())
        (kid,) = [k for k, e in index.items() if e["activated"] and not e["retired"]]
        private = load_pem_private_key((self.keys_dir / f"{kid}.pem").read_bytes(), None)
        assert isinstance(private, Ed25519PrivateKey)
        return kid, private

    def public_key(self) -> Any:
        return self.signing_key()[1].public_key()

    def claims(self, **changes: Any) -> dict[str, Any]:
        """The claims the issuer puts in a users:read users:write token, fresh
        times and jti; a change of ``None`` leaves the claim out."""
        now = int(time.time())
        found = {**self.template, "iat": now, "exp": now + 600, "jti": uuid.uuid4().hex}
        found.update(changes)
        return {k: v for k, v in found.items() if v is not None}

    def mint(
        self,
        key: Ed25519PrivateKey | None = None,
        headers: dict[str, Any] | None = None,
        **changes: Any,
    ) -> str:
        """Signed like the issuer signs: its key (unless ``key``), its kid, at+jwt."""
        kid, private = self.signing_key()
        return jwt.encode(
            self.claims(**changes),
            key or private,
            algorithm="EdDSA",
            headers={"kid": kid, "typ": "at+jwt", **(headers or {})},
        )

    def real(self, scope: str = "users:read") -> str:
        """A token the issuer issued itself, to the development client."""
        return self.fleet.token(scope)


@pytest.fixture(scope="module")
def issuer(tmp_path_factory: pytest.TempPathFactory, attacker: Attacker) -> Iterator[Issuer]:
    tmp = tmp_path_factory.mktemp("identity")
    data = tmp / "data"
    with running_fleet(tmp, {"LOCKGATE_DATA_DIR": str(data)}) as fleet:
        found = Issuer(fleet, data, attacker)
        issued = fleet.token("users:read users:write")
        found.template = jwt.decode(issued, options={"verify_signature": False})
        assert found.template["aud"] == ["orders", "users"]  # every resource service
        yield found


def _hs256(issuer: Issuer, secret: bytes) -> str:
    """HS256 with the public key as the HMAC secret: the algorithm-confusion attack."""
    kid, _ = issuer.signing_key()
    signing = f"{b64json({'alg': 'HS256', 'typ': 'at+jwt', 'kid': kid})}.{b64json(issuer.claims())}"
    signature = hmac.new(secret, signing.encode(), hashlib.sha256).digest()
    return f"{signing}.{b64(signature)}"


def _alg_none(issuer: Issuer) -> str:
    kid, _ = issuer.signing_key()
    return f"{b64json({'alg': 'none', 'typ': 'at+jwt', 'kid': kid})}.{b64json(issuer.claims())}."


def _foreign(issuer: Issuer, kid: str | None = None, **headers: Any) -> str:
    """Signed by the attacker's key, under the fleet's kid unless ``kid``."""
    return issuer.mint(
        key=issuer.attacker.key, headers={**({"kid": kid} if kid else {}), **headers}
    )


def _embedded_jwk(issuer: Issuer) -> str:
    jwk = jwt.algorithms.OKPAlgorithm.to_jwk(issuer.attacker.key.public_key(), as_dict=True)
    return _foreign(issuer, jwk=jwk)


def _tampered_payload(issuer: Issuer) -> str:
    """A real users:read token, its payload swapped for one with users:write."""
    header, payload, signature = issuer.real("users:read").split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["scope"] = "users:read users:write"
    return f"{header}.{b64json(claims)}.{signature}"


def _tampered_signature(issuer: Issuer) -> str:
    header, payload, signature = issuer.real("users:read").split(".")
    raw = bytearray(base64.urlsafe_b64decode(signature + "=="))
    raw[0] ^= 0x01  # one bit: the decoded bytes change, not only base64 padding bits
    return f"{header}.{payload}.{b64(bytes(raw))}"


def _jwe_shaped(issuer: Issuer) -> str:
    kid, _ = issuer.signing_key()
    header = b64json({"alg": "dir", "enc": "A256GCM", "kid": kid, "typ": "at+jwt"})
    return ".".join([header, "", b64(os.urandom(12)), b64(os.urandom(64)), b64(os.urandom(16))])


def _over_8_kib(issuer: Issuer) -> str:
    """Valid in every other way: the fleet's key, right claims; ~9 KiB in all."""
    token = issuer.mint(padding="x" * 6600)
    assert 8192 < len(f"Bearer {token}") < 10 * 1024
    return token


def _signed_segments(issuer: Issuer, header: str, payload: str) -> str:
    """``header.payload`` with a real signature of the fleet's key over them."""
    _, private = issuer.signing_key()
    return f"{header}.{payload}.{b64(private.sign(f'{header}.{payload}'.encode()))}"


def _header(issuer: Issuer, **changes: Any) -> str:
    kid, _ = issuer.signing_key()
    return b64json({"alg": "EdDSA", "typ": "at+jwt", "kid": kid, **changes})


@dataclass(frozen=True)
class Case:
    forge: Callable[[Issuer], str]
    method: str = "GET"
    status: int = 401

    @property
    def code(self) -> str:
        return "insufficient_scope" if self.status == 403 else "invalid_token"


def _ago(seconds: int) -> int:
    return int(time.time()) - seconds


def _ahead(seconds: int) -> int:
    return int(time.time()) + seconds


FORGERIES: dict[str, Case] = {
    "alg none": Case(_alg_none),
    "HS256 keyed with the raw public key": Case(
        lambda i: _hs256(i, i.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw))
    ),
    "HS256 keyed with the PEM public key": Case(
        lambda i: _hs256(
            i, i.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
        )
    ),
    "a key the issuer never had": Case(_foreign),
    "an unknown kid": Case(lambda i: _foreign(i, kid=f"unknown-{uuid.uuid4().hex[:8]}")),
    "jku to the attacker's JWKS": Case(
        lambda i: _foreign(i, kid=i.attacker.kid, jku=f"{i.attacker.url}/jwks.json")
    ),
    "x5u to the attacker's server": Case(
        lambda i: _foreign(i, kid=i.attacker.kid, x5u=f"{i.attacker.url}/cert.pem")
    ),
    "embedded jwk of the attacker's key": Case(_embedded_jwk),
    "tampered payload (users:write added)": Case(_tampered_payload, method="POST"),
    "tampered signature": Case(_tampered_signature),
    "expired": Case(lambda i: i.mint(iat=_ago(1200), exp=_ago(600))),
    "nbf in the future": Case(lambda i: i.mint(nbf=_ahead(600))),
    "iat in the future": Case(lambda i: i.mint(iat=_ahead(600), exp=_ahead(1200))),
    "wrong iss": Case(lambda i: i.mint(iss="https://evil.example")),
    "wrong aud": Case(lambda i: i.mint(aud="orders")),
    "missing exp": Case(lambda i: i.mint(exp=None)),
    "missing sub": Case(lambda i: i.mint(sub=None)),
    "typ JWT": Case(lambda i: i.mint(headers={"typ": "JWT"})),
    "no typ": Case(lambda i: i.mint(headers={"typ": None})),
    "exp not a number": Case(lambda i: i.mint(exp="tomorrow")),
    "scope not a string": Case(lambda i: i.mint(scope=["users:read", "users:write"])),
    "kid not a string": Case(lambda i: _signed_segments(i, _header(i, kid=7), b64json(i.claims()))),
    "payload a JSON array": Case(lambda i: _signed_segments(i, _header(i), b64json([]))),
    "header not JSON": Case(lambda i: _signed_segments(i, b64(b"{not json"), b64json(i.claims()))),
    "payload not base64": Case(lambda i: _signed_segments(i, _header(i), "@@@@")),
    "malformed base64 everywhere": Case(lambda i: "%%%.***.!!!"),
    "five segments (JWE-shaped)": Case(_jwe_shaped),
    "a token with another service's scope (orders:read)": Case(
        lambda i: i.real("orders:read"), status=403
    ),
    "an Authorization header over 8 KiB": Case(_over_8_kib),
    "a users:read token on a write": Case(
        lambda i: i.real("users:read"), method="POST", status=403
    ),
}


def assert_refused(response: httpx.Response, status: int, code: str) -> None:
    """The RFC 6750 answer: ``status``, problem+json, a Bearer challenge naming ``code``."""
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers["Content-Type"].split(";")[0] == "application/problem+json"
    body = response.json()
    assert body["status"] == status
    assert body["code"] == code
    assert response.headers["WWW-Authenticate"].startswith(f'Bearer error="{code}"')


def assert_spent(response: httpx.Response) -> None:
    """A 429 problem that says when to come back."""
    assert response.status_code == 429, (response.status_code, response.text)
    assert response.headers["Content-Type"] == "application/problem+json"
    assert response.json()["code"] == "RateLimited"
    assert 1 <= int(response.headers["Retry-After"]) <= 60


def new_user() -> dict[str, str]:
    return {"first_name": "Eve", "last_name": "Forger", "email": unique_email("forger")}


@pytest.mark.parametrize("name", sorted(FORGERIES))
def test_every_forgery_is_refused(issuer: Issuer, name: str) -> None:
    case = FORGERIES[name]
    token = case.forge(issuer)
    body = new_user() if case.method == "POST" else None
    response = issuer.fleet.anonymous.request(
        case.method, USERS, headers=bearer(token), json=body, timeout=TIMEOUT
    )
    assert_refused(response, case.status, case.code)
    if case.status == 403:
        needed = "users:write" if case.method == "POST" else "users:read"
        assert response.json()["scope"] == needed
        assert response.headers["WWW-Authenticate"] == (
            f'Bearer error="insufficient_scope", scope="{needed}"'
        )
    # Neither jku nor x5u is ever followed, by this case or any before it.
    assert issuer.attacker.fetched == []


def test_a_token_signed_with_the_fleets_key_is_accepted(issuer: Issuer) -> None:
    """The control: the forger's claims and signature are the issuer's, so a
    forgery above is refused for what it changes, not for the way it is made."""
    headers = bearer(issuer.mint())
    assert issuer.fleet.anonymous.get(USERS, headers=headers).status_code == 200
    made = issuer.fleet.anonymous.post(USERS, headers=headers, json=new_user())
    assert made.status_code == 201, made.text


def test_a_revoked_client_gets_no_new_token(issuer: Issuer) -> None:
    client_id, secret = create_client(issuer.data, "to-revoke", "users:read")
    first = request_token(issuer.fleet.base, client_id, secret)
    assert first.status_code == 200, first.text
    issued = first.json()["access_token"]
    assert f"revoked {client_id}" in lockgate(issuer.data, "clients", "revoke", client_id)
    again = request_token(issuer.fleet.base, client_id, secret)
    assert again.status_code in (400, 401), again.text
    assert again.json()["error"] == "invalid_client"
    assert again.headers["Cache-Control"] == "no-store"
    # By design: a token issued before the revocation lives until its exp (600 s).
    still = issuer.fleet.anonymous.get(USERS, headers=bearer(issued))
    assert still.status_code == 200


def test_a_key_rotation_while_the_fleet_runs(issuer: Issuer) -> None:
    fleet = issuer.fleet
    before = {key["kid"] for key in fleet.anonymous.get("/.well-known/jwks.json").json()["keys"]}
    seen, unseen = fleet.token("users:read"), fleet.token("users:read")
    assert kid_of(seen) == kid_of(unseen)
    assert fleet.anonymous.get(USERS, headers=bearer(seen)).status_code == 200

    printed = lockgate(issuer.data, "keys", "rotate", "--dir", str(issuer.keys_dir))
    assert printed.startswith("signing with ")

    after = fleet.token("users:read")
    assert kid_of(after) != kid_of(seen)
    # Published ahead, before it ever signed: verifiers that read the keys since
    # the last rotation know it already, so it works at once, without a refetch.
    assert kid_of(after) in before
    assert fleet.anonymous.get(USERS, headers=bearer(after)).status_code == 200
    # ``unseen`` was never verified (the verifier caches tokens by digest): this
    # checks the retired key itself, still published, not a remembered answer.
    assert fleet.anonymous.get(USERS, headers=bearer(unseen)).status_code == 200
    assert fleet.anonymous.get(USERS, headers=bearer(seen)).status_code == 200
    published = {key["kid"] for key in fleet.anonymous.get("/.well-known/jwks.json").json()["keys"]}
    assert {kid_of(seen), kid_of(after)} <= published
    assert len(published) == 3  # retired, signing, and the next one again


# -- Limits ------------------------------------------------------------------------------


def test_the_users_api_limits_each_client_and_the_anonymous_address_apart(
    start_fleet: Callable[..., Fleet], tmp_path: Path
) -> None:
    data = tmp_path / "limited-data"
    fleet = start_fleet({"LOCKGATE_DATA_DIR": str(data), "LOCKGATE_RATE_LIMIT": "5/minute"})
    other_id, other_secret = create_client(data, "second", "users:read")
    other = bearer(token_for(fleet.base, other_id, other_secret, "users:read"))

    def six(headers: dict[str, str]) -> list[httpx.Response]:
        return [fleet.anonymous.get(USERS, headers=headers) for _ in range(6)]

    # Both clients call from 127.0.0.1: the first one's spent budget is not the second's.
    dev = [fleet.http.get(USERS) for _ in range(6)]  # the dev client's token
    assert [r.status_code for r in dev] == [200] * 5 + [429]
    assert dev[0].headers["RateLimit-Limit"] == "5"
    second = six(other)
    assert [r.status_code for r in second] == [200] * 5 + [429]
    # No token: limited by the address, apart from both clients. The limit is
    # counted before the token is asked for, so five 401s, then a 429.
    anonymous = six({})
    assert [r.status_code for r in anonymous] == [401] * 5 + [429]
    for refused in (dev[-1], second[-1], anonymous[-1]):
        assert_spent(refused)
    # A made-up token buys no fresh budget: it counts as its address.
    forged = fleet.anonymous.get(USERS, headers=bearer("made.up.token"))
    assert forged.status_code == 429


def test_the_token_endpoint_limits_tries_per_client_id(tmp_path: Path) -> None:
    env = {
        "LOCKGATE_DATA_DIR": str(tmp_path / "data"),
        "LOCKGATE_AUTH_TOKEN_RATE_LIMIT_CLIENT": "3/minute",
    }
    with lockgate_run(tmp_path, env) as (base, log):
        client_id, secret = development_client(log.read_text())
        tries = [request_token(base, client_id, f"guess-{n}") for n in range(4)]
        assert [r.status_code for r in tries] == [401, 401, 401, 429]
        assert all(r.json()["error"] == "invalid_client" for r in tries[:3])
        assert_spent(tries[3])
        # Like every answer of the token endpoint, never stored by a cache.
        assert all(r.headers["Cache-Control"] == "no-store" for r in tries)
        # Past the budget even the right secret is not checked: guessing stops here.
        assert request_token(base, client_id, secret).status_code == 429
        # The budget is the client id's: another id from the same address still tries.
        other = request_token(base, f"cl_{uuid.uuid4().hex[:24]}", "guess")
        assert other.status_code == 401


def test_the_token_endpoint_limits_tries_per_address(tmp_path: Path) -> None:
    env = {
        "LOCKGATE_DATA_DIR": str(tmp_path / "data"),
        "LOCKGATE_AUTH_TOKEN_RATE_LIMIT_IP": "3/minute",
    }
    with lockgate_run(tmp_path, env) as (base, log):
        client_id, secret = development_client(log.read_text())
        ids = [f"cl_{uuid.uuid4().hex[:24]}" for _ in range(4)]
        tries = [request_token(base, made_up, "guess") for made_up in ids]
        assert [r.status_code for r in tries] == [401, 401, 401, 429]
        assert_spent(tries[3])
        assert request_token(base, client_id, secret).status_code == 429


# -- The development client --------------------------------------------------------------


def test_the_development_client_is_printed_on_the_first_start_only(tmp_path: Path) -> None:
    env = {"LOCKGATE_DATA_DIR": str(tmp_path / "data")}
    with running_fleet(tmp_path / "first", env) as first:
        # Fleet read the id and the secret from the log; they get a working token.
        assert first.log.read_text().count("client_secret:") == 1
        token = token_for(first.base, first.client_id, first.client_secret, "users:read")
        assert first.anonymous.get(USERS, headers=bearer(token)).status_code == 200
    with lockgate_run(tmp_path / "second", env) as (base, log):
        printed = log.read_text()
        assert "client_secret" not in printed
        assert first.client_secret not in printed
        assert f"client:   {first.client_id} (dev;" in printed  # the same one, not a new one
        token = token_for(base, first.client_id, first.client_secret, "users:read")
        assert (
            httpx.get(f"{base}{USERS}", headers=bearer(token), timeout=TIMEOUT).status_code == 200
        )
