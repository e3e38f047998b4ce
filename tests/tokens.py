"""Real signed access tokens for in-process tests: a key store's key and PyJWT."""

from __future__ import annotations

import time
import uuid
from typing import Any

import jwt

from lockgate.auth import KeyStore

ISSUER = "http://127.0.0.1:8080/auth"
AUDIENCE = "users"


def claims(**changes: Any) -> dict[str, Any]:
    """RFC 9068 claims for ``client-1``; a change of ``None`` leaves the claim out."""
    now = int(time.time())
    base = {
        "iss": ISSUER,
        "sub": "client-1",
        "client_id": "client-1",
        "aud": AUDIENCE,
        "iat": now,
        "exp": now + 600,
        "jti": uuid.uuid4().hex,
        "scope": "users:read",
    }
    base.update(changes)
    return {k: v for k, v in base.items() if v is not None}


def mint(store: KeyStore, headers: dict[str, Any] | None = None, **changes: Any) -> str:
    """A token signed with ``store``'s signing key, as the auth service signs."""
    key = store.current()
    return jwt.encode(
        claims(**changes),
        key.private,
        algorithm="EdDSA",
        headers={"kid": key.kid, "typ": "at+jwt", **(headers or {})},
    )
