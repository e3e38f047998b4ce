# syntax=docker/dockerfile:1
# One image for the whole fleet: every service, the gateway's upstreams, the
# Celery worker and the migration job run it with a different command:
#   (none)                         lockgate serve: the whole fleet in one process tree
#   --service users                one service alone (a pod behind the gateway)
#   lockgate worker                the job worker (overrides the entrypoint)
#   lockgate db upgrade            the migration job (overrides the entrypoint)
# Every option of `lockgate serve` is a LOCKGATE_* variable (see `lockgate serve --help`).

# The builder compiles what has no wheel (uWSGI) and resolves nothing: the lock decides.
FROM python:3.11.14-slim-bookworm AS builder

# uWSGI (the `server` extra) is an sdist only: it needs gcc and libc headers;
# the image already has Python's. Pinned to bookworm's version (hadolint DL3008).
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential=12.9 \
    && rm -rf /var/lib/apt/lists/*

# The same uv range as the Makefile, one exact version so a rebuild is the same build.
RUN pip install --no-cache-dir uv==0.13.9

# Bytecode compiled now (the runtime's filesystem may be read-only); the
# image's own Python, never a downloaded one; real files, not links to uv's cache.
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PROJECT_ENVIRONMENT=/app/.venv

WORKDIR /app

# Dependencies first, from the lock alone: a code change reuses this layer.
COPY pyproject.toml uv.lock README.md ./
RUN uv sync --frozen --no-dev --all-extras --no-install-project --no-editable

# Then the project itself, installed as a wheel (src/lockgate and services):
# --no-editable, so the runtime needs no source tree to import it.
COPY src/ src/
COPY services/ services/
COPY fleet.toml ./
RUN uv sync --frozen --no-dev --all-extras --no-editable \
    && python -m compileall -q services


FROM python:3.11.14-slim-bookworm

# A fixed uid/gid, so a volume's owner and a pod's runAsUser/fsGroup can name it.
# /data is the one directory the fleet writes (SQLite files, auth keys, job results);
# /keys, owned the same, is where a deployment mounts the auth service's signing
# keys (LOCKGATE_AUTH_KEYS_DIR), so a fresh named volume takes that owner.
RUN groupadd --system --gid 10001 lockgate \
    && useradd --system --no-log-init --uid 10001 --gid 10001 \
        --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin lockgate \
    && mkdir /data /keys \
    && chown 10001:10001 /data /keys

# The virtualenv at the path it was built at (its scripts name /app/.venv/bin/python).
COPY --from=builder /app/.venv /app/.venv
# The manifest and the services beside it: the manifest's `migrations` paths
# are relative to it, and serve puts its folder first on the workers' path.
COPY --from=builder /app/fleet.toml /app/fleet.toml
COPY --from=builder /app/services /app/services

# Nothing is written outside /data and TMPDIR (the server's run directory:
# drain flag, metrics, control socket). With a read-only root filesystem, a
# deployment mounts an emptyDir or tmpfs at /tmp and a volume at /data.
# No .pyc is written at run time: it was compiled in the builder.
ENV PATH=/app/.venv/bin:$PATH \
    LOCKGATE_FLEET=/app/fleet.toml \
    LOCKGATE_DATA_DIR=/data \
    LOCKGATE_BIND=0.0.0.0:8000 \
    TMPDIR=/tmp \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1

VOLUME /data
WORKDIR /app
USER 10001:10001
EXPOSE 8000

# serve drains on SIGTERM (/readyz answers 503 for LOCKGATE_DRAIN_DELAY, then
# in-flight requests get LOCKGATE_GRACEFUL_TIMEOUT): give the container at
# least their sum before SIGKILL (docker stop -t, terminationGracePeriodSeconds).
STOPSIGNAL SIGTERM

# Liveness only (/healthz checks nothing but the process); readiness is /readyz.
# Python, not curl (slim has none), on the port LOCKGATE_BIND names.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, sys, urllib.request; port = os.environ['LOCKGATE_BIND'].rpartition(':')[2]; sys.exit(urllib.request.urlopen(f'http://127.0.0.1:{port}/healthz', timeout=2).status != 200)"]

# Exec form: serve is PID 1 and gets the SIGTERM itself. Arguments are the
# command: `--service users`; no CMD, so none by default.
ENTRYPOINT ["lockgate", "serve"]
