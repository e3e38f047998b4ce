"""Where a target lives: its own variable, else the fleet's address.

``LOCKGATE_SERVICE_URL_<NAME>`` (the name upper-cased, ``-`` as ``_``) points
at one service directly. Otherwise ``LOCKGATE_FLEET_URL``, which ``lockgate
run`` and ``lockgate serve`` set to the fleet's own front door, is used: it
routes each path to the service that owns it. When ``LOCKGATE_FLEET`` names
the manifest, the target must be one of its services, so a typo fails loudly
instead of reaching whichever service owns the path. The manifest is read
with :mod:`tomllib` here, not through :mod:`lockgate.fleet`, which may not be
imported from this folder.
"""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path

from ..errors import ConfigurationError

__all__ = ["FLEET_URL_ENV", "MANIFEST_ENV", "base_url", "service_url_env"]

FLEET_URL_ENV = "LOCKGATE_FLEET_URL"
MANIFEST_ENV = "LOCKGATE_FLEET"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,62}")


def service_url_env(target: str) -> str:
    """The variable naming ``target``'s own URL: ``users`` -> ``LOCKGATE_SERVICE_URL_USERS``."""
    return "LOCKGATE_SERVICE_URL_" + target.upper().replace("-", "_")


def check_name(target: str) -> str:
    """``target`` if it is a plausible service name (it goes into metrics and Redis keys)."""
    if not _NAME.fullmatch(target):
        raise ConfigurationError(
            f"{target!r} is not a service name (letters, digits, '-' and '_', at most 63)"
        )
    return target


def _manifest_services(path: str) -> set[str]:
    try:
        data = tomllib.loads(Path(path).read_text())
    except (OSError, tomllib.TOMLDecodeError) as error:
        raise ConfigurationError(f"{MANIFEST_ENV}={path}: {error}") from None
    services = data.get("services")
    return set(services) if isinstance(services, dict) else set()


def base_url(target: str) -> str:
    """The base URL calls to ``target`` go to.

    :raises ConfigurationError: neither variable is set, or ``target`` is not a
        service of the manifest at ``$LOCKGATE_FLEET``.
    """
    own = service_url_env(target)
    found = os.environ.get(own, "").strip()
    if found:
        return found.rstrip("/")
    fleet = os.environ.get(FLEET_URL_ENV, "").strip()
    if not fleet:
        raise ConfigurationError(
            f"no address for service {target!r}: set {own} (its own URL) or "
            f"{FLEET_URL_ENV} (the fleet's, which lockgate run and lockgate serve set)"
        )
    manifest = os.environ.get(MANIFEST_ENV, "").strip()
    if manifest:
        services = _manifest_services(manifest)
        if target not in services:
            known = ", ".join(sorted(services)) or "none"
            raise ConfigurationError(
                f"{target!r} is not a service of the fleet at {manifest} (services: {known})"
            )
    return fleet.rstrip("/")
