"""The gateway, rendered from the manifest: nginx's config (and, in
:mod:`.gatewayapi`, Kubernetes Gateway API routes), so the edge cannot drift
from the services behind it.

Routing is by the same manifest as :class:`~.front.FleetApp`: a service's
resource paths under ``/api`` and ``/api/v{N}`` (and its jobs,
``/api/v{N}/jobs/<service>-...``), its ``root_paths``, and the default
service for the rest. A version with a pool of its own
(``[services.users.versions.1]``) is chosen by whichever reader names it —
the URL, the ``API-Version`` header, the vendor media type, ``?version=`` —
through ``map`` blocks made from the versions the services declare; the
service still negotiates and answers every version error.

Rendered with Jinja2 (Flask's own templating): nginx has no configuration
library worth the name, and a template keeps the config readable as nginx.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined

from .manifest import Fleet, Service

__all__ = [
    "NGINX_VERSION",
    "Location",
    "Pool",
    "ServiceRoutes",
    "local_addresses",
    "pools",
    "render_nginx",
    "service_versions",
]

#: The nginx the config is written for: Debian 12's.
NGINX_VERSION = "1.22"
_TEMPLATES = Path(__file__).parent / "templates"
#: nginx's own errors, as problem+json: (status, title, detail).
PROBLEMS = (
    (401, "Unauthorized", "a valid bearer token is required"),
    (429, "Too Many Requests", "the edge limit for this client is spent; retry after a second"),
    (502, "Bad Gateway", "no replica of the service answered"),
    (503, "Service Unavailable", "the service is unavailable"),
    (504, "Gateway Timeout", "the service did not answer in time"),
)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]", "_", text)


@dataclass(frozen=True)
class Pool:
    """An nginx upstream: a service's shared pool, or one version's."""

    service: str
    #: ``None`` for the shared pool.
    version: str | None
    replicas: int

    @property
    def name(self) -> str:
        base = _slug(self.service)
        return base if self.version is None else f"{base}_v{_slug(self.version)}"


def pools(fleet: Fleet) -> list[Pool]:
    """Every pool of the fleet, in manifest order: each service's shared pool,
    then its versions' own."""
    found = []
    for service in fleet.services:
        found.append(Pool(service.name, None, service.replicas))
        found.extend(Pool(service.name, pool.label, pool.replicas) for pool in service.pools)
    return found


def local_addresses(fleet: Fleet, host: str = "127.0.0.1") -> dict[str, list[str]]:
    """Each pool's replicas on one machine: consecutive private ports from
    ``[gateway] upstream_port``, in manifest order (``lockgate up`` starts them there)."""
    port = fleet.gateway.upstream_port
    found: dict[str, list[str]] = {}
    for pool in pools(fleet):
        found[pool.name] = [f"{host}:{port + n}" for n in range(pool.replicas)]
        port += pool.replicas
    return found


@dataclass
class ServiceRoutes:
    """What the config needs of one service's versions."""

    name: str
    slug: str
    labels: list[str]
    default: str | None
    version_pools: list[tuple[str, str]] = field(default_factory=list)
    default_pool: str | None = None


@dataclass(frozen=True)
class Location:
    match: str
    pool: str
    why: str
    cached: bool = False


def service_versions(fleet: Fleet) -> dict[str, tuple[list[str], str | None, dict[str, Any]]]:
    """Each versioned service's labels, default version and reader settings,
    from the services themselves."""
    from ..versioning import get_state
    from .front import load_service_app

    found = {}
    for service in fleet.services:
        app = load_service_app(service.app)
        if "lockgate" not in app.extensions:
            continue
        state = get_state(app)
        snapshot = state.bundle.snapshot(state.clock())
        labels = [version.label.text for version in state.bundle.versions]
        default = None if snapshot.default is None else snapshot.default.label.text
        readers = {
            "prefix": state.prefix.rstrip("/") or "/api",
            "header": str(app.config.get("LOCKGATE_HEADER") or "API-Version"),
            "query": str(app.config.get("LOCKGATE_QUERY") or "version"),
            "vendor": str(app.config.get("LOCKGATE_VENDOR") or fleet.name),
        }
        found[service.name] = (labels, default, readers)
    return found


def _routes(service: Service, versions: dict[str, Any]) -> ServiceRoutes:
    labels, default, _ = versions.get(service.name, ([], None, {}))
    routes = ServiceRoutes(service.name, _slug(service.name), labels, default)
    for pool in service.pools:
        if pool.label not in labels:
            from ..errors import ConfigurationError

            raise ConfigurationError(
                f"[services.{service.name}.versions.{pool.label}]: {service.name} declares no "
                f"version {pool.label} (it has {', '.join(labels) or 'none'})"
            )
        name = Pool(service.name, pool.label, pool.replicas).name
        routes.version_pools.append((pool.label, name))
        if pool.label == default:
            routes.default_pool = name
    return routes


def render_nginx(
    fleet: Fleet,
    *,
    run_dir: str,
    addresses: dict[str, list[str]] | None = None,
    access_log: str | None = None,
    error_log: str | None = None,
    worker_processes: str = "auto",
    manifest: str = "fleet.toml",
    user: str | None = None,
) -> str:
    """nginx.conf for the fleet; ``run_dir`` holds its pid, temp and cache files.

    :param user: the workers' user, when the master runs as root on one
        machine (its run folder is that user's); none for a deployment.
    """
    versions = service_versions(fleet)
    addresses = addresses or local_addresses(fleet)
    readers = next(iter(versions.values()))[2] if versions else {
        "prefix": "/api", "header": "API-Version", "query": "version", "vendor": fleet.name,
    }  # fmt: skip
    prefix = str(readers["prefix"])
    routes = [_routes(service, versions) for service in fleet.services]
    by_name = {route.name: route for route in routes}

    def pool_of(service: str) -> str:
        route = by_name[service]
        return f"$lockgate_pool_{route.slug}" if route.version_pools else route.slug

    default = fleet.default
    quoted = re.escape(prefix)
    public = [
        Location("= /healthz", _slug(default), "liveness"),
        Location("= /readyz", _slug(default), "readiness"),
        Location(f"= {prefix}/versions", _slug(default), "the version catalog",
                 cached=any(p == f"{prefix}/versions" for p in fleet.gateway.cache)),
        Location(f"~ ^{quoted}/v[^/]+/openapi\\.json$", _slug(default),
                 "each version's OpenAPI document", cached=True),
        Location("/docs", _slug(default), "the API docs",
                 cached=any(p == "/docs" for p in fleet.gateway.cache)),
    ]  # fmt: skip
    for service in fleet.services:
        for root in service.root_paths:
            match = root if root.endswith("/") else f"{root}/"
            why = f"{service.name}'s own paths (it checks its callers)"
            public.append(Location(match, _slug(service.name), why))
    protected = []
    for service in fleet.services:
        for path in service.paths:
            segment = re.escape(path.strip("/"))
            protected.append(Location(
                f"~ ^{quoted}(?:/v[^/]+)?/{segment}(?:/|$)", pool_of(service.name),
                f"{service.name}: {prefix}{path} in every version"))  # fmt: skip
        if service.paths or service.name in versions:
            protected.append(Location(
                f"~ ^{quoted}(?:/v[^/]+)?/jobs/{re.escape(service.name)}-", pool_of(service.name),
                f"{service.name}'s jobs (a job id names its service)"))  # fmt: skip
    protected.append(Location("/", _slug(default), f"everything else: {default}"))
    upstreams = [{"name": pool.name, "addresses": addresses[pool.name]} for pool in pools(fleet)]
    auth_pool = _slug(fleet.auth) if fleet.auth else None
    environment = Environment(
        loader=FileSystemLoader(_TEMPLATES),
        undefined=StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
    )
    template = environment.get_template("nginx.conf.j2")
    return template.render(
        manifest=manifest,
        nginx_version=NGINX_VERSION,
        worker_processes=worker_processes,
        user=user,
        run_dir=run_dir,
        error_log=error_log or f"{run_dir}/error.log",
        access_log=access_log or f"{run_dir}/access.log",
        prefix=prefix,
        header_var=str(readers["header"]).lower().replace("-", "_"),
        query=str(readers["query"]),
        vendor=re.escape(str(readers["vendor"]).lower()),
        services=routes,
        gateway=fleet.gateway,
        upstreams=upstreams,
        problems=PROBLEMS,
        auth_pool=auth_pool,
        public=public,
        protected=protected,
    )
