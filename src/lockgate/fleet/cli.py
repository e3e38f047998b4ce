"""``lockgate``: run, serve and inspect the fleet described by ``fleet.toml``.

Each command imports what it needs inside its own body, and only there: the
databases (``db`` extra), the runtime (``runtime``) and the servers
(``server``) are optional, so ``lockgate --help`` works on a core install. A
command whose optional dependency is missing stops with one line naming the
extra to install (:data:`EXTRAS`), never a traceback::

    Error: lockgate run needs the db extra: pip install 'lockgate[db]'
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import time
from typing import Any

import click

from ..errors import ConfigurationError

__all__ = ["EXTRAS", "main"]

#: The extra of pyproject.toml that installs each optional top-level package.
EXTRAS = {
    **dict.fromkeys(
        ("cachelib", "hiredis", "limits", "prometheus_client", "pymemcache", "redis", "structlog"),
        "runtime",
    ),
    **dict.fromkeys(("granian", "gunicorn", "uwsgi"), "server"),
    **dict.fromkeys(("alembic", "psycopg", "sqlalchemy"), "db"),
    **dict.fromkeys(("jwt", "cryptography"), "auth"),
    **dict.fromkeys(("httpx", "tenacity", "opentelemetry"), "client"),
    **dict.fromkeys(("celery", "kombu", "billiard"), "jobs"),
    "yaml": "gateway",
}


class _Command(click.Command):
    """A command that names the extra to install when an optional import fails."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ModuleNotFoundError as error:
            extra = EXTRAS.get((error.name or "").partition(".")[0])
            if extra is None:
                raise
            command = " ".join(["lockgate", *ctx.command_path.split()[1:]])
            raise click.ClickException(
                f"{command} needs the {extra} extra: pip install 'lockgate[{extra}]'"
            ) from None


class _Group(click.Group):
    command_class = _Command
    group_class = type  # subgroups are _Group too


manifest_option = click.option(
    "--manifest",
    envvar="LOCKGATE_FLEET",
    default="fleet.toml",
    show_default=True,
    help="The fleet manifest.",
)


def _fail(error: ConfigurationError) -> None:
    raise click.ClickException(str(error))


@click.group(cls=_Group)
def main() -> None:
    """Run and inspect a fleet of versioned Flask services."""


jobs_option = click.option(
    "--jobs/--no-jobs",
    "start_jobs",
    default=True,
    show_default=True,
    help="Start the manifest's job workers too (--no-jobs: they run elsewhere).",
)


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8080, show_default=True, type=int)
@jobs_option
@manifest_option
def run(host: str, port: int, start_jobs: bool, manifest: str) -> None:
    """Start every service behind one address (development server, threaded),
    and the manifest's job workers.

    With an auth service in the fleet, the first start creates a development
    client and prints its id and secret, once.
    """
    from werkzeug.serving import WSGIRequestHandler, make_server

    from ..serving.inputs import guard_input
    from .database import upgrade_fleet
    from .front import create_fleet_app
    from .manifest import load_manifest

    try:
        fleet = load_manifest(manifest)
    except ConfigurationError as error:
        _fail(error)
    os.environ["LOCKGATE_FLEET"] = str(fleet.root / os.path.basename(manifest))
    # Scraping a development fleet needs no token.
    os.environ.setdefault("LOCKGATE_METRICS_PUBLIC", "true")
    # Werkzeug's server always sends its own Date: the app's would be a second one.
    front: list[Any] = []

    def dispatch(environ: Any, start_response: Any) -> Any:
        return front[0](environ, start_response)

    class Handler(WSGIRequestHandler):
        def version_string(self) -> str:
            # Werkzeug's own names its version and Python's: no need to tell a client.
            return "Werkzeug"

    # Bound first: the issuer's URL holds the port, which may be chosen by the system.
    server = make_server(host, port, dispatch, threaded=True, request_handler=Handler)
    base = f"http://{host}:{server.port}"
    try:
        _issuer_settings(fleet, base)
        upgrade_fleet(fleet)
        _service_clients(fleet)
        app = create_fleet_app(manifest)
    except ConfigurationError as error:
        server.server_close()
        _fail(error)
    # A body the server cannot read (a bad chunk) is a 400 with or without a size limit.
    front.append(_server_dates(guard_input(app)))
    # The services log every request as a JSON line; Werkzeug's own line would repeat it.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    click.echo(f"lockgate fleet {fleet.name!r}: {', '.join(s.name for s in fleet.services)}")
    click.echo(f"  docs:     {base}/docs")
    click.echo(f"  versions: {base}/api/versions")
    click.echo(f"  health:   {base}/healthz")
    if fleet.auth is not None:
        _development_client(app.apps[fleet.auth], base)
    workers = _start_workers(fleet, manifest, grace=10.0, start=start_jobs)
    click.echo("Press Ctrl-C to stop.", err=True)

    def stop(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        workers.stop()
        click.echo("stopped", err=True)


def _start_workers(fleet: Any, manifest: str, *, grace: float, start: bool) -> Any:
    """The manifest's job workers, as child processes (see :mod:`.workers`)."""
    from pathlib import Path

    from .workers import WorkerProcesses

    workers = WorkerProcesses(fleet, Path(fleet.root / os.path.basename(manifest)), grace=grace)
    if not start:
        return workers
    pids = workers.start()
    for spec in fleet.workers:
        click.echo(
            f"  worker:   {spec.name} x{spec.replicas} on {', '.join(spec.queues)}"
            f" (pids {', '.join(map(str, pids))})"
        )
    return workers


def _issuer_settings(fleet: Any, base: str, *, keys: bool = True) -> None:
    """Tell every service of a one-machine fleet who issues its tokens.

    The issuer is the fleet's own address; verifiers read the issuer's public
    keys from the key directory's ``jwks.json`` (no service calls itself over
    HTTP), and the keys exist before the first worker starts. Variables set
    already win: ``LOCKGATE_AUTH_JWKS_URL`` for an issuer elsewhere.
    """
    # Where ServiceClient finds the fleet's services: all behind this address.
    os.environ.setdefault("LOCKGATE_FLEET_URL", base)
    if fleet.auth is None:
        return
    from datetime import timedelta

    from ..auth import KeyStore
    from ..auth.verify import MAX_LEEWAY
    from .database import auth_keys_dir

    os.environ.setdefault("LOCKGATE_AUTH_ISSUER", base)
    directory = auth_keys_dir()
    remote = bool(os.environ.get("LOCKGATE_AUTH_JWKS_URL"))
    if not remote:
        os.environ.setdefault("LOCKGATE_AUTH_JWKS_FILE", str(directory / "jwks.json"))
    # Verifiers reading the keys over HTTP never touch the key directory: a
    # pod of another service has none (and a read-only root filesystem).
    if keys or not remote:
        KeyStore(directory, retain=timedelta(seconds=600 + MAX_LEEWAY)).current()


def _service_clients(
    fleet: Any, *, suffix: str = "", only: set[str] | None = None, lone: bool = False
) -> None:
    """Give each service that calls others (``scopes`` in the manifest) a client
    of its own: ``LOCKGATE_<NAME>_CLIENT_ID`` and ``..._SECRET``.

    A new secret on every start (the old client of that name is revoked), so
    no secret is ever written anywhere but the service's environment.
    Variables set already win: a deployment brings its own. A worker run
    alone (``suffix``) makes clients of its own name, leaving the web
    processes' clients alone. A replica of one service (``lone``) never
    makes one: its siblings would revoke each other's, so it must be given
    one (``lockgate clients create service:NAME``).
    """
    callers = [s for s in fleet.services if s.scopes and (only is None or s.name in only)]
    if fleet.auth is None or not callers:
        return
    if lone:
        for service in callers:
            prefix = f"LOCKGATE_{service.name.upper().replace('-', '_')}_CLIENT"
            if not (os.environ.get(f"{prefix}_ID") and os.environ.get(f"{prefix}_SECRET")):
                raise ConfigurationError(
                    f"{service.name} alone needs its client: set {prefix}_ID and {prefix}_SECRET "
                    f"(lockgate clients create service:{service.name} "
                    f"--scopes {','.join(service.scopes)})"
                )
        return
    from ..auth import client_registry
    from .front import load_service_app

    auth_app = load_service_app(fleet.service(fleet.auth).app)
    registry = client_registry(auth_app)
    with auth_app.app_context():
        existing = registry.list()
        for service in callers:
            prefix = f"LOCKGATE_{service.name.upper().replace('-', '_')}_CLIENT"
            if os.environ.get(f"{prefix}_ID") and os.environ.get(f"{prefix}_SECRET"):
                continue
            name = f"service:{service.name}{suffix}"
            for old in existing:
                if old.name == name and old.revoked_at is None:
                    registry.revoke(old.id)
            client, secret = registry.create(name, frozenset(service.scopes))
            os.environ[f"{prefix}_ID"] = client.id
            os.environ[f"{prefix}_SECRET"] = secret


def _development_client(auth_app: Any, base: str) -> None:
    """On the first start, make the development client and show its secret once."""
    from ..auth import client_registry

    registry = client_registry(auth_app)
    with auth_app.app_context():
        existing = [c for c in registry.list() if c.name == DEV_CLIENT]
        if existing:
            click.echo(
                f"  client:   {existing[0].id} ({DEV_CLIENT}; its secret was shown on the first "
                "start; lockgate clients create NAME --scopes ... makes another)"
            )
            return
        scopes = frozenset(auth_app.config.get("LOCKGATE_AUTH_SCOPES") or ())
        client, secret = registry.create(DEV_CLIENT, scopes)
    get_token = (
        f"curl -s -u '{client.id}:{secret}' -d grant_type=client_credentials {base}/oauth/token"
    )
    parse = "python3 -c 'import json,sys; print(json.load(sys.stdin)[\"access_token\"])'"
    click.echo(f"Development client {DEV_CLIENT!r} created; its secret is shown only now:")
    click.echo(f"  client_id:     {client.id}")
    click.echo(f"  client_secret: {secret}")
    click.echo(f"  scopes:        {' '.join(sorted(client.scopes))}")
    click.echo("List users with a token:")
    click.echo(f'  curl -s -H "Authorization: Bearer $({get_token} | {parse})" {base}/api/v2/users')


#: The client ``lockgate run`` makes on the first start.
DEV_CLIENT = "dev"


# Every option of ``serve`` also reads an environment variable
# (LOCKGATE_BIND, LOCKGATE_WORKERS, ...): a container image runs the one
# command and a deployment sets the rest (the Dockerfile, deploy/).
@main.command()
@click.option("--workers", default=1, show_default=True, type=int, envvar="LOCKGATE_WORKERS")
@click.option(
    "--threads",
    type=int,
    envvar="LOCKGATE_THREADS",
    help="Per worker (default: 8 for gunicorn, 2 for granian, 4 for uwsgi).",
)
@click.option(
    "--server",
    type=click.Choice(["gunicorn", "granian", "uwsgi"]),
    default="gunicorn",
    show_default=True,
    envvar="LOCKGATE_SERVER",
)
@click.option("--bind", default="127.0.0.1:8080", show_default=True, envvar="LOCKGATE_BIND")
@click.option(
    "--uds",
    envvar="LOCKGATE_UDS",
    metavar="PATH",
    help="Listen on this Unix socket as well (gunicorn only).",
)
@click.option(
    "--service",
    envvar="LOCKGATE_SERVICE",
    help="Serve this one service alone (a replica behind a gateway).",
)
@click.option(
    "--migrate/--no-migrate",
    default=True,
    show_default=True,
    envvar="LOCKGATE_MIGRATE",
    help="Upgrade the schemas first (--no-migrate: a migration job does it).",
)
@click.option(
    "--jobs/--no-jobs",
    "start_jobs",
    default=True,
    show_default=True,
    envvar="LOCKGATE_SERVE_JOBS",
    help="Start the manifest's job workers too (--no-jobs: they run elsewhere).",
)
@click.option(
    "--graceful-timeout",
    default=30.0,
    show_default=True,
    type=float,
    envvar="LOCKGATE_GRACEFUL_TIMEOUT",
)
@click.option(
    "--drain-delay",
    default=5.0,
    show_default=True,
    type=float,
    envvar="LOCKGATE_DRAIN_DELAY",
    help="Seconds /readyz answers 503 before accepting stops, on SIGTERM.",
)
@manifest_option
def serve(
    workers: int,
    threads: int | None,
    server: str,
    bind: str,
    uds: str | None,
    graceful_timeout: float,
    drain_delay: float,
    service: str | None,
    migrate: bool,
    start_jobs: bool,
    manifest: str,
) -> None:
    """Serve the fleet for production: several workers, graceful drain on SIGTERM;
    and the manifest's job workers. ``--service`` serves one service's app
    alone, as each replica behind ``lockgate up``'s nginx does (and each pod
    of a deployment): only that service's schema is upgraded, and only its
    own client is made."""
    from ..serving import ServeOptions, check_options
    from ..serving import serve as run_server
    from ..versioning.lifecycle_file import check_services
    from .database import upgrade_fleet
    from .manifest import load_manifest

    target = "lockgate.fleet.front:create_fleet_app"
    if service is not None:
        try:
            target = load_manifest(manifest).service(service).app
        except ConfigurationError as error:
            _fail(error)
    options = ServeOptions(
        target=target,
        server=server,
        workers=workers,
        threads=threads,
        bind=bind,
        uds=uds,
        graceful_timeout=graceful_timeout,
        drain_delay=drain_delay,
    )
    try:
        check_options(options)
        fleet = load_manifest(manifest)
        check_services(s.name for s in fleet.services)
        os.environ["LOCKGATE_FLEET"] = str(fleet.root / os.path.basename(manifest))
        _issuer_settings(fleet, f"http://{bind}", keys=service in (None, fleet.auth))
        # Workers import services from the manifest's folder.
        os.environ["PYTHONPATH"] = os.pathsep.join(
            filter(None, [str(fleet.root), os.environ.get("PYTHONPATH")])
        )
        if migrate:
            upgrade_fleet(fleet, only=None if service is None else {service})
        _service_clients(
            fleet, only=None if service is None else {service}, lone=service is not None
        )
    except ConfigurationError as error:
        _fail(error)
    also = f" and unix:{uds}" if uds else ""
    click.echo(f"serving {fleet.name!r} with {server}, {workers} worker(s) on http://{bind}{also}")
    owner = os.getpid()
    jobs_workers = _start_workers(fleet, manifest, grace=graceful_timeout, start=start_jobs)
    try:
        status = run_server(options)
    finally:
        # Gunicorn's workers leave through here too: only the master stops them.
        if os.getpid() == owner:
            jobs_workers.stop()
    sys.exit(status)


def _server_dates(app: Any) -> Any:
    """Drop the app's ``Date``: Werkzeug's server always sends its own, and a
    response must carry one (RFC 9110 6.6.1), not two."""

    def without_date(environ: Any, start_response: Any) -> Any:
        def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            kept = [(name, value) for name, value in headers if name.lower() != "date"]
            return start_response(status, kept, exc_info)

        return app(environ, start)

    return without_date


@main.command()
@click.option("--service", help="One service (default: all).")
@manifest_option
def versions(service: str | None, manifest: str) -> None:
    """Print each service's version catalog as a table."""
    from ..openapi import table_console, versions_table
    from ..versioning import get_state
    from ..versioning.lifecycle_file import check_services
    from .front import load_service_app
    from .manifest import load_manifest

    try:
        fleet = load_manifest(manifest)
        check_services(s.name for s in fleet.services)
        chosen = [fleet.service(service)] if service else list(fleet.services)
        console = table_console()
        for item in chosen:
            app = load_service_app(item.app)
            if "lockgate" not in app.extensions:
                if service:
                    raise click.ClickException(f"{item.name} serves no API versions")
                continue  # the auth service: OAuth endpoints, not a versioned API
            console.print(versions_table(get_state(app), title=item.name))
    except ConfigurationError as error:
        _fail(error)


@main.command()
@click.option("--service", required=True)
@click.option("--version", "label", required=True)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, writable=True),
    help="Write the document to this file (a snapshot, e.g. openapi/users-v2.json).",
)
@manifest_option
def openapi(service: str, label: str, out: str | None, manifest: str) -> None:
    """Print (or snapshot) one service version's OpenAPI document."""
    from pathlib import Path

    from ..openapi import openapi_json
    from ..versioning import get_state

    app = _service_app(service, manifest)
    with app.app_context():
        text = openapi_json(get_state(app), label)
    if out is None:
        click.echo(text)
        return
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(text + "\n", encoding="utf-8")
    click.echo(f"{service} v{label}: wrote {out}", err=True)


def _service_app(service: str, manifest: str) -> Any:
    from ..versioning.lifecycle_file import check_services
    from .front import load_service_app
    from .manifest import load_manifest

    try:
        fleet = load_manifest(manifest)
        check_services(s.name for s in fleet.services)
        return load_service_app(fleet.service(service).app)
    except ConfigurationError as error:
        _fail(error)


@main.command()
@click.argument("old", required=False, type=click.Path(exists=True, dir_okay=False))
@click.argument("new", required=False, type=click.Path(exists=True, dir_okay=False))
@click.option("--service", help="Compare this service's code against its snapshots.")
@click.option("--version", "label", help="Only this version of --service.")
@click.option("--all", "every", is_flag=True, help="Every released version of every service.")
@click.option(
    "--snapshots",
    default="openapi",
    show_default=True,
    type=click.Path(file_okay=False),
    help="Where the snapshots are: <service>-v<version>.json.",
)
@manifest_option
def diff(
    old: str | None,
    new: str | None,
    service: str | None,
    label: str | None,
    every: bool,
    snapshots: str,
    manifest: str,
) -> None:
    """Classify the differences between two OpenAPI documents of one version.

    Give OLD.json NEW.json, or --service S [--version N] (or --all) to compare
    each released version's snapshot against what the code serves now. Exits
    1 on a breaking difference, naming the path and the field.
    """
    from ..openapi.diff import diff_documents, format_differences, has_breaking

    if (old is None) != (new is None):
        raise click.UsageError("give OLD.json and NEW.json, or --service / --all")
    if old is not None and (service or every):
        raise click.UsageError("give files or --service / --all, not both")
    if old is None and not (service or every):
        raise click.UsageError("give OLD.json NEW.json, --service S [--version N], or --all")
    if label is not None and not service:
        raise click.UsageError("--version goes with --service")
    pairs: list[tuple[str, Any, Any]] = []
    if old is not None and new is not None:
        pairs.append((f"{old} -> {new}", _read_document(old), _read_document(new)))
    else:
        pairs.extend(_snapshot_pairs(service, label, snapshots, manifest))
    broken = False
    for title, before, after in pairs:
        try:
            differences = diff_documents(before, after)
        except ValueError as error:  # a $ref that resolves nowhere: not a document
            raise click.BadParameter(f"{title}: {error}") from None
        click.echo(f"{title}:")
        click.echo(format_differences(differences))
        broken = broken or has_breaking(differences)
    if broken:
        click.echo("A released version would break: keep it compatible, or add a version.")
        sys.exit(1)


def _read_document(path: str) -> Any:
    import json

    try:
        with open(path, encoding="utf-8") as file:
            document = json.load(file)
    except (OSError, ValueError) as error:
        raise click.BadParameter(f"{path}: {error}") from None
    if not isinstance(document, dict) or "paths" not in document:
        raise click.BadParameter(f"{path}: not an OpenAPI document (no paths)")
    return document


def _snapshot_pairs(
    service: str | None, label: str | None, snapshots: str, manifest: str
) -> list[tuple[str, Any, Any]]:
    """(title, snapshot, the code's document) for each released version asked for."""
    import json
    from pathlib import Path

    from ..openapi import build_openapi
    from ..versioning import VersionStatus, get_state
    from ..versioning.versions import Label
    from .manifest import load_manifest

    try:
        fleet = load_manifest(manifest)
    except ConfigurationError as error:
        _fail(error)
    names = [service] if service else [s.name for s in fleet.services]
    pairs = []
    for name in names:
        app = _service_app(name, manifest)
        if "lockgate" not in app.extensions:
            if service:
                raise click.ClickException(f"{name} serves no API versions")
            continue  # not versioned (the auth service): nothing released to guard
        state = get_state(app)
        now = state.clock()
        statuses = state.bundle.snapshot(now).statuses
        chosen = state.bundle.versions
        if label is not None:
            wanted = Label.parse(label)
            chosen = tuple(v for v in chosen if v.label == wanted)
            if not chosen:
                raise click.BadParameter(f"{name} has no version {label!r}")
        for version in chosen:
            status = statuses[version.label]
            # Released: served to clients now. Previews may change; retired are gone.
            if label is None and status in (VersionStatus.PREVIEW, VersionStatus.RETIRED):
                continue
            path = Path(snapshots) / f"{name}-v{version.label.text}.json"
            if not path.exists():
                raise click.ClickException(
                    f"{name} v{version.label.text} is released but has no snapshot {path}: "
                    f"lockgate openapi --service {name} --version {version.label.text} "
                    f"--out {path}"
                )
            with app.app_context():
                # Through JSON, as the snapshot went: the same types on both sides.
                current = json.loads(json.dumps(build_openapi(app, state, version.label, now)))
            title = f"{name} v{version.label.text} ({path} -> the code)"
            pairs.append((title, _read_document(str(path)), current))
    return pairs


@main.group()
def keys() -> None:
    """The auth service's signing keys (in the data directory, or LOCKGATE_AUTH_KEYS_DIR)."""


def _key_store(directory: str | None, token_ttl: int) -> Any:
    from datetime import timedelta
    from pathlib import Path

    from ..auth import KeyStore
    from ..auth.verify import MAX_LEEWAY
    from .database import auth_keys_dir

    path = Path(directory) if directory else auth_keys_dir()
    # A retired key stays published until the last token it signed has expired.
    return KeyStore(path, retain=timedelta(seconds=token_ttl + MAX_LEEWAY))


_keys_dir = click.option("--dir", "directory", help="The keys' directory.")
_token_ttl = click.option(
    "--token-ttl",
    default=600,
    show_default=True,
    type=click.IntRange(1),
    help="The longest token lifetime in seconds (how long a retired key stays published).",
)


@keys.command("rotate")
@_keys_dir
@_token_ttl
def keys_rotate(directory: str | None, token_ttl: int) -> None:
    """Sign with the next key; the previous one stays published until its tokens expire."""
    store = _key_store(directory, token_ttl)
    signing = store.rotate()
    click.echo(f"signing with {signing.kid}; {len(store.published())} keys published")


@keys.command("list")
@_keys_dir
@_token_ttl
def keys_list(directory: str | None, token_ttl: int) -> None:
    """Each key: signing, next (published ahead) or retired, and whether it is published."""
    store = _key_store(directory, token_ttl)
    published = {key.kid for key in store.published()}
    for key in store.stored():
        state = "next" if key.activated is None else "retired" if key.retired else "signing"
        shown = "published" if key.kid in published else "unpublished"
        click.echo(f"{key.kid}  {state:8}  {shown}")


def _manifest_services() -> list[str]:
    """The manifest's services with an API (the ones that serve versions), or
    ``[""]`` (the fleet's default service) without a manifest."""
    from .manifest import load_manifest

    try:
        fleet = load_manifest(os.environ.get("LOCKGATE_FLEET"))
    except ConfigurationError:
        return [""]
    return [s.name for s in fleet.services if s.paths] or [""]


def _usage_rows(target: str, token: str | None) -> list[dict[str, Any]]:
    import json
    import urllib.error
    import urllib.request

    asking = urllib.request.Request(target)
    if token:
        asking.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(asking, timeout=10) as response:
            found: list[dict[str, Any]] = json.load(response)
    except urllib.error.HTTPError as error:
        if error.code in (401, 403):
            raise click.ClickException(
                f"{target} answered {error.code}: give --token (a token with ops:read)"
            ) from None
        raise click.ClickException(f"cannot read {target}: {error}") from None
    except OSError as error:
        raise click.ClickException(f"cannot read {target}: {error}") from None
    return found


@main.group()
def clients() -> None:
    """The auth service's OAuth 2.0 clients (in its database)."""


def _registry(manifest: str) -> Any:
    """The fleet's auth service's client registry, its schema upgraded."""
    from ..auth import client_registry
    from .database import database_url, upgrade
    from .front import load_service_app
    from .manifest import load_manifest

    try:
        fleet = load_manifest(manifest)
        if fleet.auth is None:
            raise ConfigurationError(f"{manifest} has no auth service ([fleet] auth = ...)")
        service = fleet.service(fleet.auth)
        if service.migrations is not None:
            upgrade(service.migrations, database_url(service.name))
        app = load_service_app(service.app)
    except ConfigurationError as error:
        _fail(error)
    return app, client_registry(app)


def _scopes(value: str) -> frozenset[str]:
    return frozenset(part for part in value.replace(" ", ",").split(",") if part)


@clients.command("create")
@click.argument("name")
@click.option("--scopes", required=True, help="Comma-separated: users:read,users:write.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@manifest_option
def clients_create(name: str, scopes: str, as_json: bool, manifest: str) -> None:
    """Make a client; prints its id and its secret, which is shown only this once."""
    import json

    if not 1 <= len(name) <= 100 or not name.isprintable():
        raise click.BadParameter("1 to 100 printable characters", param_hint="NAME")
    app, registry = _registry(manifest)
    wanted = _scopes(scopes)
    known = frozenset(app.config.get("LOCKGATE_AUTH_SCOPES") or ())
    if not wanted or (known and not wanted <= known):
        unknown = ", ".join(sorted(wanted - known)) or "none given"
        raise click.BadParameter(
            f"unknown scopes: {unknown} (known: {', '.join(sorted(known))})",
            param_hint="--scopes",
        )
    with app.app_context():
        client, secret = registry.create(name, wanted)
    if as_json:
        click.echo(
            json.dumps(
                {
                    "client_id": client.id,
                    "client_secret": secret,
                    "name": client.name,
                    "scopes": sorted(client.scopes),
                }
            )
        )
    else:
        click.echo(f"client_id: {client.id}")
        click.echo(f"client_secret: {secret}")
        click.echo(f"scopes: {' '.join(sorted(client.scopes))}")
    click.echo("Keep the secret now: it is stored only as a hash, never shown again.", err=True)


@clients.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
@manifest_option
def clients_list(as_json: bool, manifest: str) -> None:
    """Every client: id, name, scopes, made and revoked when (never a secret)."""
    import json

    from rich.table import Table

    from ..openapi import table_console

    app, registry = _registry(manifest)
    with app.app_context():
        found = registry.list()
    rows = [
        {
            "client_id": c.id,
            "name": c.name,
            "scopes": sorted(c.scopes),
            "created_at": c.created_at.isoformat(),
            "revoked_at": None if c.revoked_at is None else c.revoked_at.isoformat(),
        }
        for c in found
    ]
    if as_json:
        click.echo(json.dumps(rows))
        return
    table = Table(title="OAuth 2.0 clients")
    for column in ("client_id", "name", "scopes", "created_at", "revoked_at"):
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(
            row["client_id"],
            row["name"],
            " ".join(row["scopes"]),
            row["created_at"],
            row["revoked_at"] or "",
        )
    table_console().print(table)


@clients.command("revoke")
@click.argument("client_id")
@manifest_option
def clients_revoke(client_id: str, manifest: str) -> None:
    """Revoke a client: it gets no new token (those it has expire on their own)."""
    app, registry = _registry(manifest)
    with app.app_context():
        found = registry.revoke(client_id)
    if not found:
        raise click.ClickException(f"no client {client_id!r}")
    click.echo(f"revoked {client_id}")


@main.group()
def db() -> None:
    """The services' databases."""


@db.command()
@click.option("--service", "only", multiple=True, help="Only this service (repeatable).")
@manifest_option
def upgrade(only: tuple[str, ...], manifest: str) -> None:
    """Create or upgrade every service's schema (Alembic migrations)."""
    from .database import database_url, upgrade_fleet
    from .manifest import load_manifest

    try:
        fleet = load_manifest(manifest)
        for name in only:
            fleet.service(name)
        done = upgrade_fleet(fleet, only=set(only) or None)
    except ConfigurationError as error:
        _fail(error)
    for service in done:
        url = database_url(service.name)
        click.echo(f"{service.name}: upgraded {url.split('@')[-1]}")


@db.command("wait")
@click.option("--service", required=True, help="The service whose schema to wait for.")
@click.option("--timeout", default=600.0, show_default=True, type=float, help="Seconds.")
@manifest_option
def db_wait(service: str, timeout: float, manifest: str) -> None:
    """Wait until the service's database is at the newest revision this code
    knows (a pod's init step: the migration job upgrades, the pods wait).

    Exits 1 when the timeout passes first."""
    from .database import database_url, is_current
    from .manifest import load_manifest

    try:
        spec = load_manifest(manifest).service(service)
    except ConfigurationError as error:
        _fail(error)
    if spec.migrations is None:
        click.echo(f"{service}: no migrations")
        return
    deadline = time.monotonic() + timeout
    url = database_url(service)
    while True:
        try:
            current = is_current(spec.migrations, url)
        except Exception as error:  # the database may not be up yet
            current, why = False, f"{type(error).__name__}: {error}"
        else:
            why = "not at the newest revision yet"
        if current:
            click.echo(f"{service}: schema is current")
            return
        if time.monotonic() > deadline:
            raise click.ClickException(f"{service}: {why} after {timeout:g} s")
        time.sleep(2)


@main.command()
@click.option(
    "--url",
    default="http://127.0.0.1:8080",
    show_default=True,
    help="A running fleet; its /usage answers from Redis or from its process.",
)
@click.option("--service", help="One service (default: all).")
@click.option(
    "--token",
    envvar="LOCKGATE_TOKEN",
    help="An access token with ops:read (or $LOCKGATE_TOKEN): /usage is for operators.",
)
def usage(url: str, service: str | None, token: str | None) -> None:
    """Which clients still call deprecated versions: how often, when last."""
    from rich.table import Table

    from ..openapi import table_console

    # Without Redis each service keeps its own report: ask each of the manifest's.
    names = [service] if service else _manifest_services()
    targets = [f"{url.rstrip('/')}/usage" + (f"?service={name}" if name else "") for name in names]
    rows: list[dict[str, Any]] = []
    seen: set[tuple[str, str, str]] = set()
    for target in targets:
        for row in _usage_rows(target, token):
            key = (row["service"], row["version"], row["client"])
            if key not in seen and (not service or row["service"] == service):
                seen.add(key)
                rows.append(row)
    table = Table(title="Calls to deprecated versions")
    for column in ("service", "version", "client", "calls", "last_seen"):
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(
            *(str(row[c]) for c in ("service", "version", "client", "calls", "last_seen"))
        )
    table_console().print(table)
    if not rows:
        click.echo("No client called a deprecated version (since the data's retention).")


@main.command()
@click.option("--name", help="The manifest's worker to run (default: its first).")
@click.option("--replica", default=1, show_default=True, type=click.IntRange(1))
@click.option("--queues", help="Comma-separated services whose jobs to run (overrides --name).")
@click.option("--concurrency", type=click.IntRange(1), help="Jobs at once (default: manifest).")
@click.option(
    "--pool",
    type=click.Choice(["prefork", "threads", "solo"]),
    default="prefork",
    show_default=True,
    help="prefork: a process per job, and hard time limits.",
)
@click.option(
    "--url",
    envvar="LOCKGATE_FLEET_URL",
    default="http://127.0.0.1:8080",
    show_default=True,
    help="Where the fleet serves (the issuer, and the services its jobs call).",
)
@click.option(
    "--migrate/--no-migrate",
    default=True,
    show_default=True,
    envvar="LOCKGATE_MIGRATE",
    help="Upgrade its services' schemas first (--no-migrate: a migration job does it).",
)
@manifest_option
def worker(
    name: str | None,
    replica: int,
    queues: str | None,
    concurrency: int | None,
    pool: str,
    url: str,
    migrate: bool,
    manifest: str,
) -> None:
    """Run one job worker (Celery) for the fleet's services, until SIGTERM."""
    from ..jobs.worker import run_worker
    from ..runtime.logs import configure_logging
    from .database import upgrade
    from .front import load_service_app
    from .manifest import load_manifest

    try:
        fleet = load_manifest(manifest)
        spec = None
        if name is not None:
            spec = next((w for w in fleet.workers if w.name == name), None)
            if spec is None:
                raise ConfigurationError(f"no worker {name!r} in {manifest}")
        elif fleet.workers:
            spec = fleet.workers[0]
        chosen = _scopes(queues) if queues else (set(spec.queues) if spec else set())
        services = [fleet.service(s) for s in sorted(chosen)] if chosen else list(fleet.services)
        os.environ["LOCKGATE_FLEET"] = str(fleet.root / os.path.basename(manifest))
        _issuer_settings(fleet, url.rstrip("/"), keys=False)
        for service in services:
            if migrate and service.migrations is not None:
                upgrade(service.migrations, _database_url(service.name))
        # Its own clients, by worker and replica: replicas started alone do
        # not revoke each other's (nor the web side's).
        label = f" (worker {spec.name if spec else 'worker'}-{replica})"
        _service_clients(fleet, suffix=label, only={s.name for s in services})
        configure_logging()
        apps = [load_service_app(service.app) for service in services]
        apps = [app for app in apps if "lockgate.jobs" in app.extensions]
        if not apps:
            raise ConfigurationError("none of these services has jobs")
    except ConfigurationError as error:
        _fail(error)
    worker_name = spec.name if spec is not None and not queues else "worker"
    run_worker(
        apps,
        concurrency=concurrency or (spec.concurrency if spec is not None else 2),
        pool=pool,
        name=f"{worker_name}-{replica}-{os.getpid()}@{fleet.name}",
    )


def _database_url(service: str) -> str:
    from .database import database_url

    return database_url(service)


@main.group()
def jobs() -> None:
    """The services' background jobs (read from their databases)."""


def _job_services(manifest: str, only: str | None = None) -> list[Any]:
    """(name, Jobs) of each service with jobs, its schema upgraded."""
    from .database import upgrade
    from .front import load_service_app
    from .manifest import load_manifest

    try:
        fleet = load_manifest(manifest)
        chosen = [fleet.service(only)] if only else list(fleet.services)
        found = []
        for service in chosen:
            if service.migrations is not None:
                upgrade(service.migrations, _database_url(service.name))
            app = load_service_app(service.app)
            if "lockgate.jobs" in app.extensions:
                found.append((service.name, app.extensions["lockgate.jobs"]))
    except ConfigurationError as error:
        _fail(error)
    if only and not found:
        raise click.ClickException(f"{only} has no jobs")
    return found


def _job_row(job: Any) -> dict[str, Any]:
    def moment(value: Any) -> str | None:
        return None if value is None else value.isoformat()

    return {
        "id": job.id,
        "type": job.type,
        "status": job.status,
        "progress": job.progress,
        "attempts": job.attempts,
        "owner": job.owner,
        "request_id": job.request_id,
        "created_at": moment(job.created_at),
        "started_at": moment(job.started_at),
        "finished_at": moment(job.finished_at),
        "result": job.result,
        "error": job.error,
    }


def _find_job(job_id: str, manifest: str) -> tuple[Any, Any]:
    service = job_id.rpartition("-")[0]
    if not service:
        raise click.BadParameter("a job id is <service>-<hex>", param_hint="ID")
    for _, found in _job_services(manifest, service):
        job = found.store.get(job_id)
        if job is not None:
            return found, job
    raise click.ClickException(f"no job {job_id!r}")


@jobs.command("list")
@click.option("--service", help="One service (default: every one with jobs).")
@click.option("--status", type=click.Choice(["queued", "running", "succeeded", "failed",
                                             "cancelled"]))  # fmt: skip
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 1000))
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
@manifest_option
def jobs_list(
    service: str | None, status: str | None, limit: int, as_json: bool, manifest: str
) -> None:
    """The newest jobs: id, type, status, progress, deliveries."""
    import json

    from rich.table import Table

    from ..openapi import table_console

    rows: list[dict[str, Any]] = []
    for _, found in _job_services(manifest, service):
        rows.extend(_job_row(job) for job in found.store.recent(status=status, limit=limit))
    rows.sort(key=lambda row: row["created_at"] or "", reverse=True)
    rows = rows[:limit]
    if as_json:
        click.echo(json.dumps(rows))
        return
    table = Table(title="Jobs")
    for column in ("id", "type", "status", "progress", "attempts", "created_at"):
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(
            row["id"], row["type"], row["status"], f"{row['progress']:.0%}",
            str(row["attempts"]), row["created_at"],
        )  # fmt: skip
    table_console().print(table)


@jobs.command("show")
@click.argument("job_id", metavar="ID")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@manifest_option
def jobs_show(job_id: str, as_json: bool, manifest: str) -> None:
    """One job, with its result or error."""
    import json

    _, job = _find_job(job_id, manifest)
    row = _job_row(job)
    if as_json:
        click.echo(json.dumps(row))
        return
    for key, value in row.items():
        click.echo(f"{key + ':':13} {json.dumps(value) if isinstance(value, dict) else value}")


@jobs.command("retry")
@click.argument("job_id", metavar="ID")
@manifest_option
def jobs_retry(job_id: str, manifest: str) -> None:
    """Queue a failed or cancelled job again (its deliveries counted anew)."""
    found, job = _find_job(job_id, manifest)
    if job.status not in ("failed", "cancelled"):
        raise click.ClickException(f"job {job_id} is {job.status}: only failed or cancelled")
    found.store.retry(job_id)
    try:
        found.relay.sweep()  # publish now if the broker is there; else a relay will
    except Exception as error:
        click.echo(f"not published yet ({error}); a running relay will", err=True)
    click.echo(f"queued {job_id} again")


@main.group()
def gateway() -> None:
    """The gateway in front of the fleet, rendered from the manifest."""


@gateway.command("render")
@click.option(
    "--target",
    type=click.Choice(["nginx", "gateway-api"]),
    required=True,
    help="nginx: nginx.conf; gateway-api: Kubernetes Gateway API and Envoy Gateway resources.",
)
@click.option(
    "--out",
    type=click.Path(file_okay=False),
    help="Write the files into this folder (default: print them).",
)
@click.option(
    "--run-dir",
    default="run",
    show_default=True,
    help="nginx: its pid, temp and cache folder (relative: to nginx's -p prefix).",
)
@manifest_option
def gateway_render(target: str, out: str | None, run_dir: str, manifest: str) -> None:
    """Render the gateway's configuration; never edit the output by hand."""
    from pathlib import Path

    from .manifest import load_manifest

    try:
        fleet = load_manifest(manifest)
        if target == "nginx":
            from .gateway import render_nginx

            files = {"nginx.conf": render_nginx(fleet, run_dir=run_dir, manifest=manifest)}
        else:
            from .gatewayapi import render_gateway_api

            files = render_gateway_api(fleet, manifest=manifest)
    except ConfigurationError as error:
        _fail(error)
    if out is not None and target == "nginx" and not Path(run_dir).is_absolute():
        (Path(out) / run_dir).mkdir(parents=True, exist_ok=True)
    _write_files(files, out)


@main.group()
def deploy() -> None:
    """Deployment files (Compose, Kubernetes), rendered from the manifest."""


@deploy.command("render")
@click.option(
    "--target",
    type=click.Choice(["compose", "kubernetes"]),
    required=True,
    help="compose: compose.yaml and the gateway's nginx.conf; kubernetes: a kustomize "
    "layout (base/, overlays/dev, overlays/prod).",
)
@click.option(
    "--overlay",
    type=click.Choice(["dev", "prod"]),
    help="kubernetes: one overlay built, as `kubectl kustomize overlays/NAME` gives it.",
)
@click.option(
    "--out",
    type=click.Path(file_okay=False),
    help="Write the files into this folder (default: print them).",
)
@click.option(
    "--check",
    is_flag=True,
    help="Write nothing: exit 1 if the files in --out differ from what would be rendered.",
)
@manifest_option
def deploy_render(
    target: str, overlay: str | None, out: str | None, check: bool, manifest: str
) -> None:
    """Render the deployment; never edit the output by hand (CI checks it)."""
    from pathlib import Path

    from .manifest import load_manifest

    if overlay is not None and target != "kubernetes":
        raise click.UsageError("--overlay is for --target kubernetes")
    if check and out is None:
        raise click.UsageError("--check compares with the files in --out")
    try:
        fleet = load_manifest(manifest)
        name = os.path.basename(manifest)
        if target == "compose":
            from .deploy import render_compose

            files = render_compose(fleet, manifest=name)
        elif overlay is None:
            from .deploy import render_kubernetes

            files = render_kubernetes(fleet, manifest=name)
        else:
            from .deploy import build_overlay, dump

            objects = build_overlay(fleet, overlay)
            header = (
                f"# lockgate deploy render --target kubernetes --overlay {overlay}: what "
                f"`kubectl apply -k overlays/{overlay}` applies, from {name}.\n"
            )
            files = {f"{overlay}.yaml": header + dump(objects)}
    except ConfigurationError as error:
        _fail(error)
    if check:
        assert out is not None
        folder = Path(out)
        stale = [n for n, text in files.items() if _read(folder / n) != text]
        expected = set(files)
        extra = sorted(
            str(p.relative_to(folder)) for p in folder.rglob("*.yaml")
            if str(p.relative_to(folder)) not in expected
        )  # fmt: skip
        if stale or extra:
            for n in stale:
                click.echo(f"differs: {folder / n}", err=True)
            for n in extra:
                click.echo(f"not rendered any more: {folder / n}", err=True)
            command = f"lockgate deploy render --target {target} --out {out}"
            raise click.ClickException(f"{out} is out of date with {name}: run `{command}`")
        click.echo(f"{out}: up to date with {name}")
        return
    _write_files(files, out)


def _write_files(files: dict[str, str], out: str | None) -> None:
    """Rendered ``files`` to stdout (each under a ``# --- name`` line when
    there are several), or into the folder ``out``."""
    from pathlib import Path

    if out is None:
        for name, text in files.items():
            if len(files) > 1:
                click.echo(f"# --- {name}")
            click.echo(text, nl=False)
        return
    for name, text in files.items():
        path = Path(out) / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        click.echo(f"wrote {path}", err=True)


def _read(path: Any) -> str | None:
    try:
        return str(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8080, show_default=True, type=int)
@jobs_option
@manifest_option
def up(host: str, port: int, start_jobs: bool, manifest: str) -> None:
    """The production topology on one machine: nginx in front, each service
    replica a `lockgate serve` of its own, the job workers."""
    from pathlib import Path

    from .database import upgrade_fleet
    from .manifest import load_manifest
    from .up import Topology

    try:
        fleet = load_manifest(manifest)
        path = fleet.root / os.path.basename(manifest)
        os.environ["LOCKGATE_FLEET"] = str(path)
        base = f"http://{host}:{port}"
        _issuer_settings(fleet, base)
        # Behind nginx: exactly one proxy hop to believe (X-Forwarded-For).
        os.environ.setdefault("LOCKGATE_TRUSTED_PROXIES", "1")
        os.environ["PYTHONPATH"] = os.pathsep.join(
            filter(None, [str(fleet.root), os.environ.get("PYTHONPATH")])
        )
        upgrade_fleet(fleet)
        _service_clients(fleet)
        topology = Topology(fleet, Path(path), host=host, port=port)
    except ConfigurationError as error:
        _fail(error)

    def stop(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    try:
        topology.start_replicas()
        topology.start_nginx()
        if fleet.auth is not None:
            from .front import load_service_app

            _development_client(load_service_app(fleet.service(fleet.auth).app), base)
        topology.workers = _start_workers(fleet, manifest, grace=30.0, start=start_jobs)
        control = topology.serve_control()
        click.echo(f"lockgate up: {base} (nginx) -> {topology.replica_count} replicas")
        click.echo(f"  rollouts: lockgate rollout SERVICE (control socket {control})")
        click.echo("Press Ctrl-C to stop.", err=True)
        while True:
            time.sleep(1)
            if topology.nginx is not None and topology.nginx.poll() is not None:
                raise click.ClickException("nginx exited")
    except KeyboardInterrupt:
        pass
    except click.ClickException:
        topology.stop()
        raise
    except ConfigurationError as error:
        topology.stop()
        _fail(error)
    except RuntimeError as error:
        topology.stop()
        raise click.ClickException(str(error)) from None
    topology.stop()
    click.echo("stopped", err=True)


@main.command()
@click.argument("service")
@click.option(
    "--drain/--no-drain",
    default=True,
    show_default=True,
    help="--no-drain is a drill, never for use: each old replica is killed (SIGKILL) while "
    "nginx still routes to it, so a load test can show that it detects the failures.",
)
def rollout(service: str, drain: bool) -> None:
    """Replace each replica of SERVICE in the running `lockgate up`, one at a
    time, as a Deployment with maxUnavailable 0 does: the new one ready and
    in nginx's upstream before the old one leaves it and drains."""
    from .up import ask_up, control_socket, describe

    path = control_socket()
    try:
        answers = ask_up({"rollout": service, "drain": drain}, path)
    except FileNotFoundError:
        raise click.ClickException(
            f"no lockgate up is running here (no control socket at {path})"
        ) from None
    except ConnectionRefusedError:
        raise click.ClickException(
            f"no lockgate up is running here (nothing answers on the stale socket {path})"
        ) from None
    for message in answers:
        if "ok" not in message:
            click.echo(describe(message))
        elif message["ok"]:
            click.echo(f"rolled out {service}: {message['replaced']} replicas replaced")
            return
        else:
            raise click.ClickException(str(message.get("error")))
    raise click.ClickException("lockgate up closed the connection before the rollout ended")
