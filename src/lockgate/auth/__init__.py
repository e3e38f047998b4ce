"""Identity: verifying OAuth 2.0 access tokens (RFC 9068) in every service, and an issuer's keys.

The rule of this folder: it stands alone. It imports nothing from
``lockgate.versioning``, ``runtime``, ``serving`` or ``fleet``; the runtime
reads who is calling through :func:`current_client` (limits and usage count
by ``client_id``). PyJWT (the ``auth`` extra) is imported only when a token
is verified or a key made, so importing this package costs nothing.
"""

from __future__ import annotations

from .clients import REGISTRY, ClientRegistry, RegisteredClient, client_registry
from .extension import (
    Auth,
    authenticated,
    check_scope,
    current_client,
    require_scope,
    required_scopes,
    security_scheme,
)
from .keys import KeyStore, SigningKey
from .verify import MAX_TOKEN_BYTES, Client, InvalidToken, TokenVerifier

__all__ = [
    "MAX_TOKEN_BYTES",
    "REGISTRY",
    "Auth",
    "Client",
    "ClientRegistry",
    "InvalidToken",
    "KeyStore",
    "RegisteredClient",
    "SigningKey",
    "TokenVerifier",
    "authenticated",
    "check_scope",
    "client_registry",
    "current_client",
    "require_scope",
    "required_scopes",
    "security_scheme",
]
