"""Signing keys of an issuer: Ed25519 private keys on disk, their public JWKS, rotation.

Private keys are PEM files of mode 0600 in one directory (the data
directory's ``auth-keys/`` or ``LOCKGATE_AUTH_KEYS_DIR``), never in the
repository; ``keys.json`` beside them says when each was made, activated and
retired. One key signs; the *next* one is published beside it before it ever
signs, so a verifier that fetched the JWKS since the last rotation already
knows the key that signs after the next one (a new token works at once,
without waiting for a refetch). A retired key's public half stays in the JWKS
until every token it signed has expired (the longest token lifetime plus the
verifiers' leeway after its retirement), then its files go.

``jwks.json`` beside them is the public JWKS as of the last change, for
verifiers on the same machine (``LOCKGATE_AUTH_JWKS_FILE``): the one-machine
fleet reads it instead of calling itself over HTTP. Changes take an
exclusive ``flock``, so two workers starting at once make one signing key.
"""

from __future__ import annotations

import fcntl
import json
import os
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

__all__ = ["KeyStore", "SigningKey"]


def _moment(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


INDEX = "keys.json"
#: The public JWKS, rewritten on every change.
PUBLIC = "jwks.json"


@dataclass(frozen=True, slots=True)
class SigningKey:
    """One key pair: ``kid``, the private key, and its lifecycle."""

    kid: str
    private: Any  # cryptography's Ed25519PrivateKey
    created: datetime
    retired: datetime | None = None
    #: When it started signing; ``None`` for the next key, published only.
    activated: datetime | None = None

    @property
    def algorithm(self) -> str:
        return "EdDSA"

    def public_jwk(self) -> dict[str, Any]:
        """The public half as a JWK (RFC 8037: ``kty`` OKP, ``crv`` Ed25519)."""
        from jwt.algorithms import OKPAlgorithm

        jwk: dict[str, Any] = OKPAlgorithm.to_jwk(self.private.public_key(), as_dict=True)
        jwk.update(kid=self.kid, use="sig", alg=self.algorithm)
        return jwk


class KeyStore:
    """The signing keys in ``directory``.

    :param retain: how long a retired key's public half stays published:
        the longest token lifetime plus the verifiers' leeway.
    """

    def __init__(self, directory: str | os.PathLike[str], *, retain: timedelta) -> None:
        self.directory = Path(directory)
        self.retain = retain

    def stored(self) -> list[SigningKey]:
        """Every key on disk, oldest first."""
        from cryptography.hazmat.primitives.serialization import load_pem_private_key

        index = self._index()
        found = []
        for kid, entry in index.items():
            try:
                pem = (self.directory / f"{kid}.pem").read_bytes()
            except FileNotFoundError:
                continue  # pruned by another process since the index was read
            private = load_pem_private_key(pem, password=None)
            found.append(
                SigningKey(
                    kid,
                    private,
                    datetime.fromisoformat(entry["created"]),
                    _moment(entry.get("retired")),
                    _moment(entry.get("activated")),
                )
            )
        return sorted(found, key=lambda key: key.created)

    def current(self, now: datetime | None = None) -> SigningKey:
        """The key that signs (made, with the next one, on first use)."""
        moment = now or datetime.now(UTC)
        stored = self.stored()
        if any(k.retired is not None and moment >= k.retired + self.retain for k in stored):
            # A key past its retention leaves the disk and the public jwks.json
            # now, not at the next rotation: verifiers reading the file drop it.
            with self._locked():
                index = self._index()
                self._prune(index, moment)
                self._write_index(index)
                self._write_public(moment)
            stored = self.stored()
        keys = [key for key in stored if key.retired is None and key.activated is not None]
        if keys:
            return keys[-1]
        with self._locked():
            # Another process may have made it while this one waited.
            keys = [k for k in self.stored() if k.retired is None and k.activated is not None]
            return keys[-1] if keys else self._rotate(now)

    def rotate(self, now: datetime | None = None) -> SigningKey:
        """Retire the signing key, let the next (already published) one sign,
        and publish a new next one; keys retired longer than :attr:`retain`
        ago are deleted. Returns the key that signs now."""
        with self._locked():
            return self._rotate(now)

    def _locked(self) -> Any:
        """An exclusive lock on the directory, across processes."""
        from contextlib import contextmanager

        @contextmanager
        def hold() -> Any:
            self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            os.chmod(self.directory, 0o700)
            descriptor = os.open(self.directory / ".lock", os.O_WRONLY | os.O_CREAT, 0o600)
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX)
                yield
            finally:
                os.close(descriptor)  # releases the lock

        return hold()

    def _rotate(self, now: datetime | None) -> SigningKey:
        moment = now or datetime.now(UTC)
        index = self._index()
        for entry in index.values():
            if entry.get("activated") and entry.get("retired") is None:
                entry["retired"] = moment.isoformat()
        pending = [kid for kid, entry in index.items() if not entry.get("activated")]
        signing = pending[0] if pending else self._make(index, moment)
        index[signing]["activated"] = moment.isoformat()
        self._make(index, moment)  # the next one, published from now on
        self._prune(index, moment)
        self._write_index(index)
        self._write_public(moment)
        return next(key for key in self.stored() if key.kid == signing)

    def _make(self, index: dict[str, Any], moment: datetime) -> str:
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
        from cryptography.hazmat.primitives.serialization import (
            Encoding,
            NoEncryption,
            PrivateFormat,
        )

        private = Ed25519PrivateKey.generate()
        kid = f"{moment:%Y%m%d%H%M%S}-{secrets.token_hex(4)}"
        pem = private.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
        path = self.directory / f"{kid}.pem"
        # Created 0600 from the start: never readable by others, not even briefly.
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "wb") as file:
            file.write(pem)
        index[kid] = {"created": moment.isoformat(), "activated": None, "retired": None}
        return kid

    def published(self, now: datetime | None = None) -> list[SigningKey]:
        """The keys whose public half a verifier may still need."""
        moment = now or datetime.now(UTC)
        return [
            key
            for key in self.stored()
            if key.retired is None or moment < key.retired + self.retain
        ]

    def jwks(self, now: datetime | None = None) -> dict[str, Any]:
        """``{"keys": [...]}`` for ``/.well-known/jwks.json``."""
        return {"keys": [key.public_jwk() for key in reversed(self.published(now))]}

    def _prune(self, index: dict[str, Any], now: datetime) -> None:
        for kid, entry in list(index.items()):
            retired = entry.get("retired")
            if retired is not None and now >= datetime.fromisoformat(retired) + self.retain:
                (self.directory / f"{kid}.pem").unlink(missing_ok=True)
                del index[kid]

    def _index(self) -> dict[str, Any]:
        path = self.directory / INDEX
        if not path.exists():
            return {}
        loaded: dict[str, Any] = json.loads(path.read_text())
        return loaded

    def _write_index(self, index: dict[str, Any]) -> None:
        path = self.directory / INDEX
        temporary = path.with_suffix(".tmp")
        temporary.write_text(json.dumps(index, indent=2))
        os.chmod(temporary, 0o600)
        os.replace(temporary, path)

    def _write_public(self, now: datetime) -> None:
        path = self.directory / PUBLIC
        temporary = path.with_suffix(".tmp-public")
        temporary.write_text(json.dumps(self.jwks(now), indent=2))
        os.chmod(temporary, 0o644)  # public keys: any verifier may read them
        os.replace(temporary, path)
