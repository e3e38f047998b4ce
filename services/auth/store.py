"""OAuth 2.0 clients and their secrets, which are kept only as scrypt hashes.

A secret is 32 random bytes, shown once when the client is made. It is stored
as ``scrypt$N$r$p$salt$hash``. The check compares in constant time and does
the same scrypt work for an unknown client id, so a wrong id takes as long as
a wrong secret. The standard library's ``hashlib.scrypt`` is the slow hash:
it needs no dependency and is one of the two the issue names.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import (
    Column,
    DateTime,
    Engine,
    MetaData,
    String,
    Table,
    insert,
    select,
    update,
)

metadata = MetaData()

clients = Table(
    "clients",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("name", String(100), nullable=False),
    Column("secret_hash", String(200), nullable=False),
    Column("scopes", String(1000), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("revoked_at", DateTime(timezone=True), nullable=True),
)


#: scrypt's cost: 2**14 rounds with 8-byte blocks (16 MiB, tens of milliseconds).
N, R, P = 2**14, 8, 1


def hash_secret(secret: str, salt: bytes | None = None) -> str:
    salt = salt or secrets.token_bytes(16)
    digest = hashlib.scrypt(secret.encode(), salt=salt, n=N, r=R, p=P, dklen=32)
    encode = base64.urlsafe_b64encode
    return f"scrypt${N}${R}${P}${encode(salt).decode()}${encode(digest).decode()}"


def secret_matches(secret: str, stored: str) -> bool:
    """Constant time once the hash is computed; the hash's own cost is fixed."""
    try:
        _, n, r, p, salt, digest = stored.split("$")
        expected = base64.urlsafe_b64decode(digest)
        computed = hashlib.scrypt(
            secret.encode(),
            salt=base64.urlsafe_b64decode(salt),
            n=int(n),
            r=int(r),
            p=int(p),
            dklen=32,
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(computed, expected)


#: Compared against when the client id is unknown: the same work either way.
_DUMMY = hash_secret(secrets.token_urlsafe(32))


@dataclass(frozen=True, slots=True)
class Client:
    id: str
    name: str
    scopes: frozenset[str]
    created_at: datetime
    revoked_at: datetime | None


class ClientStore:
    """Create, list, revoke and authenticate clients."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def ping(self) -> None:
        with self.engine.connect() as connection:
            connection.execute(select(1))

    def create(self, name: str, scopes: frozenset[str]) -> tuple[Client, str]:
        """A new client and its secret (the only time the secret is seen)."""
        client_id = f"cl_{secrets.token_hex(12)}"
        secret = secrets.token_urlsafe(32)
        now = datetime.now(UTC)
        with self.engine.begin() as connection:
            connection.execute(
                insert(clients).values(
                    id=client_id,
                    name=name,
                    secret_hash=hash_secret(secret),
                    scopes=" ".join(sorted(scopes)),
                    created_at=now,
                )
            )
        return Client(client_id, name, scopes, now, None), secret

    def list(self) -> list[Client]:
        with self.engine.connect() as connection:
            rows = connection.execute(select(clients).order_by(clients.c.created_at)).all()
        return [_client(row) for row in rows]

    def revoke(self, client_id: str) -> bool:
        """Revoke ``client_id``; ``False`` if there is no such client."""
        with self.engine.begin() as connection:
            done = connection.execute(
                update(clients)
                .where(clients.c.id == client_id, clients.c.revoked_at.is_(None))
                .values(revoked_at=datetime.now(UTC))
            )
            exists = connection.execute(
                select(clients.c.id).where(clients.c.id == client_id)
            ).first()
        return done.rowcount > 0 or exists is not None

    def authenticate(self, client_id: str, secret: str) -> Client | None:
        """The client if ``secret`` is its secret and it is not revoked."""
        with self.engine.connect() as connection:
            row = connection.execute(select(clients).where(clients.c.id == client_id)).first()
        stored = row.secret_hash if row is not None else _DUMMY
        matches = secret_matches(secret, stored)
        if row is None or not matches or row.revoked_at is not None:
            return None
        return _client(row)


def _client(row: object) -> Client:
    return Client(
        row.id,  # type: ignore[attr-defined]
        row.name,  # type: ignore[attr-defined]
        frozenset(row.scopes.split()),  # type: ignore[attr-defined]
        row.created_at,  # type: ignore[attr-defined]
        row.revoked_at,  # type: ignore[attr-defined]
    )
