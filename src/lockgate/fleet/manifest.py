"""``fleet.toml``: the services of the fleet, their factories, paths and replicas.

::

    [fleet]
    name = "lockgate"
    default = "users"            # answers the shared paths: /healthz, /docs, /api/versions
    auth = "auth"                # issues the tokens (default: the service named auth)

    [services.users]
    app = "services.users:create_app"
    paths = ["/users"]           # resources under /api and /api/v{N}
    replicas = 2
    migrations = "services/users/migrations"

    [services.auth]
    app = "services.auth:create_app"
    root_paths = ["/oauth", "/.well-known"]   # owned outside /api
    migrations = "services/auth/migrations"

    [services.orders]
    app = "services.orders:create_app"
    paths = ["/orders"]
    scopes = ["users:read"]      # its own client's, for calling users
    migrations = "services/orders/migrations"

    [services.worker]            # a worker, not a web service: it has queues
    queues = ["users", "orders"] # the services whose jobs it runs
    replicas = 1
    concurrency = 2              # jobs at once per replica
"""

from __future__ import annotations

import os
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigurationError

__all__ = [
    "MANIFEST_ENV",
    "Fleet",
    "Gateway",
    "Service",
    "VersionPool",
    "Worker",
    "find_manifest",
    "load_manifest",
]

#: Environment variable pointing at the manifest (default: ./fleet.toml).
MANIFEST_ENV = "LOCKGATE_FLEET"


@dataclass(frozen=True)
class VersionPool:
    """A version of a service on a deployment of its own
    (``[services.users.versions.1] replicas = 1``): scaled or moved without
    touching the other versions, which share the service's pool."""

    label: str
    replicas: int = 1


@dataclass(frozen=True)
class Service:
    """One service of the fleet."""

    name: str
    #: ``module:factory``; the factory takes no required argument.
    app: str
    #: The resource paths it owns below the API prefix (``/users``).
    paths: tuple[str, ...]
    replicas: int = 1
    #: Path prefixes it owns outside the API prefix (``/oauth``, ``/.well-known``).
    root_paths: tuple[str, ...] = ()
    #: The scopes of its own client, for the services it calls (``users:read``).
    scopes: tuple[str, ...] = ()
    #: Alembic script directory, relative to the manifest, if it has a database.
    migrations: Path | None = None
    #: Versions with a pool of their own; every other version shares the service's.
    pools: tuple[VersionPool, ...] = ()


@dataclass(frozen=True)
class Worker:
    """A Celery worker of the fleet: runs the jobs of the services it names."""

    name: str
    #: The services whose queues it consumes.
    queues: tuple[str, ...]
    replicas: int = 1
    #: Jobs at once in one replica (its prefork children).
    concurrency: int = 2


@dataclass(frozen=True)
class Gateway:
    """``[gateway]``: the edge in front of the fleet (nginx, Gateway API)."""

    #: Where the gateway listens.
    listen: str = "127.0.0.1:8080"
    #: The edge's coarse per-client limit: requests per second, and the burst
    #: above it let through at once (the services keep the exact limits).
    rate: int = 100
    burst: int = 200
    #: Version-neutral public documents the edge may cache, path prefixes.
    cache: tuple[str, ...] = ("/api/versions", "/docs")
    #: Seconds the edge keeps a cached public document.
    cache_seconds: int = 10
    #: Idle keep-alive connections to each upstream, per gateway worker.
    keepalive: int = 32
    #: The first private port of the replicas on one machine (``lockgate up``).
    upstream_port: int = 9100
    #: The tokens' issuer as clients see it (default: ``http://<listen>``).
    issuer: str = ""
    #: Kubernetes: the GatewayClass, and the port every Service listens on.
    gateway_class: str = "eg"
    service_port: int = 8000


@dataclass(frozen=True)
class Fleet:
    """The whole manifest."""

    name: str
    services: tuple[Service, ...]
    #: The service answering paths no service owns (health, docs, catalog).
    default: str
    #: The folder holding the manifest; service modules import from here.
    root: Path
    #: The service issuing the fleet's tokens, if the fleet has one.
    auth: str | None = None
    #: Its job workers (``[services.<name>]`` tables with ``queues``).
    workers: tuple[Worker, ...] = ()
    #: The edge: ``[gateway]`` (defaults without it).
    gateway: Gateway = Gateway()

    def service(self, name: str) -> Service:
        for service in self.services:
            if service.name == name:
                return service
        known = ", ".join(s.name for s in self.services)
        raise ConfigurationError(f"no service {name!r} in the fleet (services: {known})")


def find_manifest(path: str | os.PathLike[str] | None = None) -> Path:
    """The manifest to use: ``path``, ``$LOCKGATE_FLEET`` or ``./fleet.toml``."""
    chosen = Path(path or os.environ.get(MANIFEST_ENV) or "fleet.toml")
    if not chosen.is_file():
        raise ConfigurationError(f"fleet manifest {chosen} not found (set {MANIFEST_ENV})")
    return chosen.resolve()


def load_manifest(path: str | os.PathLike[str] | None = None) -> Fleet:
    """Read and check the manifest; put its folder on ``sys.path`` for the factories.

    :raises ConfigurationError: a missing or invalid manifest.
    """
    manifest = find_manifest(path)
    try:
        data = tomllib.loads(manifest.read_text())
    except tomllib.TOMLDecodeError as error:
        raise ConfigurationError(f"{manifest}: {error}") from None
    root = manifest.parent
    services = []
    workers = []
    owners: dict[str, str] = {}
    for name, table in (data.get("services") or {}).items():
        where = f"{manifest.name} [services.{name}]"
        if isinstance(table, dict) and "queues" in table:
            workers.append(_worker(name, table, where))
            continue
        if not isinstance(table, dict) or not isinstance(table.get("app"), str):
            raise ConfigurationError(f"{where}: app = 'module:factory' is required")
        allowed = {"app", "paths", "root_paths", "replicas", "migrations", "scopes", "versions"}
        unknown = set(table) - allowed
        if unknown:
            raise ConfigurationError(f"{where}: unknown keys {', '.join(sorted(unknown))}")
        paths = tuple("/" + str(p).strip("/") for p in table.get("paths", ()))
        for owned in paths:
            if owned in owners:
                raise ConfigurationError(f"{where}: {owned} is already owned by {owners[owned]}")
            owners[owned] = name
        root_paths = tuple("/" + str(p).strip("/") for p in table.get("root_paths", ()))
        for owned in root_paths:
            if owned == "/" or owned == "/api" or owned.startswith("/api/"):
                raise ConfigurationError(f"{where}: root_paths may not be / or under /api")
            if f"root:{owned}" in owners:
                raise ConfigurationError(
                    f"{where}: {owned} is already owned by {owners[f'root:{owned}']}"
                )
            owners[f"root:{owned}"] = name
        scopes = table.get("scopes", [])
        if not isinstance(scopes, list) or not all(isinstance(x, str) and x for x in scopes):
            raise ConfigurationError(f"{where}: scopes must be a list of scope names")
        replicas = table.get("replicas", 1)
        if not isinstance(replicas, int) or replicas < 1:
            raise ConfigurationError(f"{where}: replicas must be a positive integer")
        migrations = table.get("migrations")
        pools = _pools(table.get("versions", {}), where)
        services.append(
            Service(
                name=name,
                app=table["app"],
                paths=paths,
                replicas=replicas,
                root_paths=root_paths,
                scopes=tuple(scopes),
                migrations=None if migrations is None else root / migrations,
                pools=pools,
            )
        )
    if not services:
        raise ConfigurationError(f"{manifest}: no [services.*] table")
    fleet_table = data.get("fleet") or {}
    default = fleet_table.get("default", services[0].name)
    names = {service.name for service in services}
    auth = fleet_table.get("auth", "auth" if "auth" in names else None)
    fleet = Fleet(
        name=fleet_table.get("name", root.name),
        services=tuple(services),
        default=default,
        root=root,
        auth=auth,
        workers=tuple(workers),
        gateway=_gateway(data.get("gateway", {}), f"{manifest.name} [gateway]"),
    )
    for worker in workers:
        for queue in worker.queues:
            if queue not in names:
                raise ConfigurationError(
                    f"{manifest.name} [services.{worker.name}]: queues: no service {queue!r}"
                )
    fleet.service(default)  # must exist
    if auth is not None:
        fleet.service(auth)
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    return fleet


def _worker(name: str, table: dict[str, object], where: str) -> Worker:
    unknown = set(table) - {"queues", "replicas", "concurrency"}
    if unknown:
        raise ConfigurationError(f"{where}: unknown keys {', '.join(sorted(unknown))} (a worker)")
    queues = table["queues"]
    if not isinstance(queues, list) or not queues or not all(isinstance(q, str) for q in queues):
        raise ConfigurationError(f"{where}: queues must be a list of service names")
    replicas = table.get("replicas", 1)
    concurrency = table.get("concurrency", 2)
    for key, value in (("replicas", replicas), ("concurrency", concurrency)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ConfigurationError(f"{where}: {key} must be a positive integer")
    assert isinstance(replicas, int) and isinstance(concurrency, int)
    return Worker(name, tuple(queues), replicas, concurrency)


def _pools(table: object, where: str) -> tuple[VersionPool, ...]:
    if not isinstance(table, dict):
        raise ConfigurationError(f"{where}: versions must be tables: [services.NAME.versions.1]")
    pools = []
    for label, options in table.items():
        if not isinstance(options, dict) or set(options) - {"replicas"}:
            raise ConfigurationError(f"{where}: versions.{label} takes replicas only")
        replicas = options.get("replicas", 1)
        if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 1:
            raise ConfigurationError(f"{where}: versions.{label}.replicas must be positive")
        pools.append(VersionPool(str(label), replicas))
    return tuple(pools)


def _gateway(table: object, where: str) -> Gateway:
    if not isinstance(table, dict):
        raise ConfigurationError(f"{where}: must be a table")
    defaults = Gateway()
    unknown = set(table) - set(Gateway.__dataclass_fields__)
    if unknown:
        raise ConfigurationError(f"{where}: unknown keys {', '.join(sorted(unknown))}")
    values: dict[str, object] = {}
    for key, value in table.items():
        default = getattr(defaults, key)
        if isinstance(default, tuple):
            if not isinstance(value, list) or not all(
                isinstance(v, str) and v.startswith("/") for v in value
            ):
                raise ConfigurationError(f"{where}: {key} must be a list of paths")
            values[key] = tuple(value)
        elif isinstance(default, int):
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ConfigurationError(f"{where}: {key} must be a non-negative integer")
            values[key] = value
        else:
            if not isinstance(value, str) or (key == "listen" and ":" not in value):
                raise ConfigurationError(f"{where}: {key} must be a string (listen: host:port)")
            values[key] = value
    return Gateway(**values)  # type: ignore[arg-type]
