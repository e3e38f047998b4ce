"""One WSGI app for the whole fleet: each request goes to the service owning its path.

``/api/users``, ``/api/v1/users/5`` and ``/api/v2/users?cursor=...`` all go to
the service whose manifest entry lists ``/users``; ``/oauth/token`` to the one
whose ``root_paths`` list ``/oauth``; any other path (health, docs, the
version catalog) goes to the fleet's default service. Every service's own
shared paths are under ``/services/<name>/`` too (``/services/orders/docs``,
``/services/orders/api/v2/openapi.json``): mounted there as WSGI mounts are,
by moving the prefix from ``PATH_INFO`` to ``SCRIPT_NAME``. A job,
``/api/v2/jobs/<service>-<hex>``, goes to the service its id names. This is the
in-process stand-in for the gateway, which routes by the same manifest.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

from werkzeug.utils import ImportStringError, import_string

from ..errors import ConfigurationError
from ..versioning.lifecycle_file import check_services
from .manifest import Fleet, load_manifest

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

__all__ = ["FleetApp", "create_fleet_app", "load_service_app"]

#: Where each service is mounted whole: ``/services/<name>/...``.
MOUNT = "/services/"
_VERSION_SEGMENT = re.compile(r"[vV]\d[^/]*")


class FleetApp:
    """Routes requests to the services' WSGI apps by the first resource segment."""

    def __init__(
        self,
        fleet: Fleet,
        apps: dict[str, WSGIApplication],
        prefix: str = "/api",
    ) -> None:
        self.fleet = fleet
        self.apps = apps
        self.prefix = prefix.rstrip("/") + "/"
        self.default = apps[fleet.default]
        self.owners = {
            path.strip("/"): apps[service.name]
            for service in fleet.services
            for path in service.paths
        }
        #: Longest first, so ``/a/b`` wins over ``/a``.
        self.roots = sorted(
            (
                (path, apps[service.name])
                for service in fleet.services
                for path in service.root_paths
            ),
            key=lambda item: -len(item[0]),
        )

    def app_for(self, path: str) -> WSGIApplication:
        if not path.startswith(self.prefix):
            for root, app in self.roots:
                if path == root or path.startswith(root + "/"):
                    return app
            return self.default
        first, _, rest = path[len(self.prefix) :].partition("/")
        if _VERSION_SEGMENT.fullmatch(first) and rest:
            first, _, rest = rest.partition("/")
        if first == "jobs" and rest:
            # A job id names its service: users-0f3c... is the users service's.
            owner = rest.partition("/")[0].rpartition("-")[0]
            return self.apps.get(owner, self.default)
        return self.owners.get(first, self.default)

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO") or "/"
        if path.startswith(MOUNT):
            name, _, rest = path[len(MOUNT) :].partition("/")
            app = self.apps.get(name)
            if app is not None:
                environ["SCRIPT_NAME"] = f"{environ.get('SCRIPT_NAME', '')}{MOUNT}{name}"
                environ["PATH_INFO"] = "/" + rest
                return app(environ, start_response)
        if path == "/usage":
            # Each service keeps its own report without Redis: ask the one named.
            wanted = parse_qs(environ.get("QUERY_STRING", "")).get("service", [""])[0]
            if wanted in self.apps:
                return self.apps[wanted](environ, start_response)
        return self.app_for(path)(environ, start_response)


def load_service_app(target: str) -> Any:
    """Import ``module:factory`` (Werkzeug's ``import_string``) and call the factory.

    :raises ConfigurationError: ``target`` is not ``module:factory``, or it
        names nothing importable.
    """
    if ":" not in target:
        raise ConfigurationError(f"{target!r} is not module:factory")
    try:
        factory = import_string(target)
    except ImportStringError as error:
        missing = error.exception
        if isinstance(missing, ModuleNotFoundError) and (missing.name or "") not in target:
            raise missing from None  # a missing dependency, not a wrong name
        raise ConfigurationError(f"cannot import {target!r}: {error.exception}") from None
    return factory()


def create_fleet_app(manifest: str | None = None) -> FleetApp:
    """Build every service of the manifest and put them behind one WSGI app.

    :raises ConfigurationError: an invalid manifest or lifecycle file.
    """
    fleet = load_manifest(manifest)
    check_services(service.name for service in fleet.services)
    apps = {service.name: load_service_app(service.app) for service in fleet.services}
    return FleetApp(fleet, apps)
