"""`lockgate deploy render`: Compose and Kubernetes files from fleet.toml,
validated offline and checked for the invariants a safe rollout needs.

- built-in kinds: ``kubernetes-validate`` in strict mode for a pinned
  Kubernetes minor (:data:`KUBERNETES`);
- Gateway API and Envoy Gateway kinds: their CRD schemas (tests/schemas);
  KEDA's: a schema of its documented fields (tests/schemas/keda-v2);
- compose.yaml: the Compose specification's JSON Schema (check-jsonschema);
- the committed deploy/ equals a fresh render (the drift check).

Each check is shown to refuse a broken input, so none is a formality.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from lockgate.fleet.deploy import (
    DRAIN_DELAY,
    GRACEFUL_TIMEOUT,
    OVERLAYS,
    PRESTOP_SECONDS,
    apply_kustomization,
    base_resources,
    build_overlay,
)
from lockgate.fleet.gateway import pools
from lockgate.fleet.manifest import load_manifest
from tests.fleet.test_gateway import CRDS, crd_schema
from tests.servers import LOCKGATE, ROOT

#: The Kubernetes minor the built-in kinds are validated for.
KUBERNETES = "1.35.0"
SCHEMAS = ROOT / "tests" / "schemas"
KEDA = {
    "ScaledObject": SCHEMAS / "keda-v2" / "scaledobject.json",
    "TriggerAuthentication": SCHEMAS / "keda-v2" / "triggerauthentication.json",
}
CUSTOM_GROUPS = ("gateway.networking.k8s.io/", "gateway.envoyproxy.io/", "keda.sh/")
SECRET_NAMES = re.compile(r"SECRET|PASSWORD|_TOKEN$|DATABASE_URL|REDIS_URL|BROKER_URL|_KEY$")


@pytest.fixture(autouse=True)
def _data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Rendering loads each service's app to read its versions; nothing lands in the repo.
    monkeypatch.setenv("LOCKGATE_DATA_DIR", str(tmp_path / "data"))


def lockgate(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LOCKGATE), *args], cwd=ROOT, env=dict(os.environ), capture_output=True,
        text=True, timeout=120,
    )  # fmt: skip


def fleet() -> Any:
    return load_manifest(ROOT / "fleet.toml")


def by_kind(objects: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in objects if o["kind"] == kind}


def env_of(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container.get("env", ())}


# --- the drift check ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("target", "folder"), [("kubernetes", "deploy/k8s"), ("compose", "deploy/compose")]
)
def test_the_committed_files_are_what_the_manifest_renders(target: str, folder: str) -> None:
    result = lockgate("deploy", "render", "--target", target, "--out", folder, "--check")
    assert result.returncode == 0, result.stderr
    assert "up to date" in result.stdout


def test_the_drift_check_fails_on_an_edited_or_a_stale_file(tmp_path: Path) -> None:
    copy = tmp_path / "k8s"
    shutil.copytree(ROOT / "deploy" / "k8s", copy)
    edited = copy / "base" / "users.yaml"
    edited.write_text(edited.read_text().replace("maxUnavailable: 0", "maxUnavailable: 1"))
    (copy / "base" / "left-over.yaml").write_text("kind: ConfigMap\n")
    result = lockgate("deploy", "render", "--target", "kubernetes", "--out", str(copy), "--check")
    assert result.returncode == 1
    assert f"differs: {edited}" in result.stderr
    assert "not rendered any more" in result.stderr and "left-over.yaml" in result.stderr
    assert "lockgate deploy render --target kubernetes --out" in result.stderr


def test_bad_options_are_usage_errors() -> None:
    result = lockgate("deploy", "render", "--target", "compose", "--overlay", "prod")
    assert result.returncode == 2
    assert "--overlay is for --target kubernetes" in result.stderr
    result = lockgate("deploy", "render", "--target", "kubernetes", "--check")
    assert result.returncode == 2


# --- kustomize ------------------------------------------------------------------------------


@pytest.mark.parametrize("overlay", sorted(OVERLAYS))
def test_an_overlay_built_from_the_committed_files_is_what_render_prints(overlay: str) -> None:
    """The committed kustomization, applied to the committed base, gives the
    objects ``--overlay`` prints (which the rest of these tests check)."""
    folder = ROOT / "deploy" / "k8s"
    base = yaml.safe_load((folder / "base" / "kustomization.yaml").read_text())
    objects = [
        o for name in base["resources"]
        for o in yaml.safe_load_all((folder / "base" / name).read_text()) if o
    ]  # fmt: skip
    kustomization = yaml.safe_load(
        (folder / "overlays" / overlay / "kustomization.yaml").read_text()
    )
    for name in kustomization["resources"]:
        if name != "../../base":
            path = folder / "overlays" / overlay / name
            objects.extend(o for o in yaml.safe_load_all(path.read_text()) if o)
    built = apply_kustomization(objects, kustomization)
    printed = lockgate("deploy", "render", "--target", "kubernetes", "--overlay", overlay)
    assert printed.returncode == 0, printed.stderr
    assert built == [o for o in yaml.safe_load_all(printed.stdout) if o]


# --- validation -------------------------------------------------------------------------------


@pytest.mark.parametrize("overlay", sorted(OVERLAYS))
def test_every_object_validates_against_its_schema(overlay: str) -> None:
    objects = build_overlay(fleet(), overlay)
    builtin = [o for o in objects if not o["apiVersion"].startswith(CUSTOM_GROUPS)]
    assert {o["kind"] for o in builtin} >= {
        "ConfigMap", "Deployment", "Service", "PodDisruptionBudget",
        "HorizontalPodAutoscaler", "NetworkPolicy", "Job", "PersistentVolumeClaim",
    }  # fmt: skip
    for item in builtin:
        kubernetes_validate.validate(item, KUBERNETES, strict=True)
    for item in objects:
        kind = item["kind"]
        if item["apiVersion"].startswith(CUSTOM_GROUPS[:2]):
            version = item["apiVersion"].rsplit("/", 1)[1]
            jsonschema.Draft7Validator(crd_schema(CRDS[kind], kind, version)).validate(item)
        elif item["apiVersion"].startswith("keda.sh/"):
            schema = json.loads(KEDA[kind].read_text())
            jsonschema.Draft7Validator(schema).validate(item)
    kinds = {o["kind"] for o in objects}
    assert {"Gateway", "HTTPRoute", "SecurityPolicy", "BackendTrafficPolicy"} <= kinds
    assert ("ScaledObject" in kinds) is (overlay == "prod")


def test_the_validators_refuse_what_a_cluster_would() -> None:
    objects = build_overlay(fleet(), "prod")
    deployment = json.loads(json.dumps(by_kind(objects, "Deployment")["users"]))
    deployment["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]["htpGet"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES, strict=True)
    scaled = json.loads(json.dumps(by_kind(objects, "ScaledObject")["worker"]))
    scaled["spec"]["triggers"][0]["metadata"]["queueLength"] = "5"  # KEDA 1's field
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft7Validator(json.loads(KEDA["ScaledObject"].read_text())).validate(scaled)


def test_compose_validates_against_the_compose_specification(tmp_path: Path) -> None:
    checker = Path(sys.executable).with_name("check-jsonschema")
    compose = ROOT / "deploy" / "compose" / "compose.yaml"
    args = [str(checker), "--builtin-schema", "vendor.compose-spec"]
    good = subprocess.run([*args, str(compose)], capture_output=True, text=True, timeout=60)
    assert good.returncode == 0, good.stdout + good.stderr
    broken = tmp_path / "compose.yaml"
    data = yaml.safe_load(compose.read_text())
    data["services"]["users"]["depends_on"]["migrate"]["condition"] = "service_happy"
    broken.write_text(yaml.safe_dump(data))
    bad = subprocess.run([*args, str(broken)], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 1, bad.stdout


# --- the invariants ---------------------------------------------------------------------------


def problems(objects: list[dict[str, Any]], manifest: Any) -> list[str]:
    """What makes a rollout unsafe or leaks a secret, in words."""
    found: list[str] = []
    deployments = by_kind(objects, "Deployment")
    services = by_kind(objects, "Service")
    budgets = by_kind(objects, "PodDisruptionBudget")
    scalers = by_kind(objects, "HorizontalPodAutoscaler")
    config = by_kind(objects, "ConfigMap")["lockgate-config"]["data"]
    drain = float(config["LOCKGATE_DRAIN_DELAY"]) + float(config["LOCKGATE_GRACEFUL_TIMEOUT"])
    for name, deployment in deployments.items():
        spec = deployment["spec"]
        pod = spec["template"]["spec"]
        update = spec["strategy"]
        if update.get("type") != "RollingUpdate" or update["rollingUpdate"] != {
            "maxUnavailable": 0, "maxSurge": "25%"}:  # fmt: skip
            found.append(f"{name}: rolling update is not maxUnavailable 0, maxSurge 25%")
        grace = pod.get("terminationGracePeriodSeconds", 30)
        for container in [*pod["containers"], *pod.get("initContainers", ())]:
            where = f"{name}/{container['name']}"
            security = container.get("securityContext", {})
            if not (security.get("readOnlyRootFilesystem") and security.get("runAsNonRoot")
                    and security.get("allowPrivilegeEscalation") is False
                    and security.get("capabilities", {}).get("drop") == ["ALL"]):  # fmt: skip
                found.append(f"{where}: securityContext is not locked down")
            resources = container.get("resources", {})
            if not (resources.get("requests") and resources.get("limits")):
                found.append(f"{where}: no resource requests and limits")
            for variable, entry in env_of(container).items():
                if SECRET_NAMES.search(variable) and (
                    "value" in entry or "secretKeyRef" not in entry.get("valueFrom", {})
                ):
                    found.append(f"{where}: {variable} is not a secretKeyRef")
        if pod.get("securityContext", {}).get("runAsNonRoot") is not True:
            found.append(f"{name}: the pod may run as root")
        if deployment["metadata"]["labels"]["app.kubernetes.io/component"] == "worker":
            limit = float(config["LOCKGATE_JOBS_TIME_LIMIT"])
            if grace <= limit:
                found.append(f"{name}: grace {grace} s is not above the task limit {limit} s")
            continue
        app = pod["containers"][0]
        probes = {
            kind: app.get(kind, {}).get("httpGet", {}).get("path")
            for kind in ("startupProbe", "livenessProbe", "readinessProbe")
        }
        if probes != {"startupProbe": "/healthz", "livenessProbe": "/healthz",
                      "readinessProbe": "/readyz"}:  # fmt: skip
            found.append(f"{name}: probes are {probes}")
        sleep = app.get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds", 0)
        if not 5 <= sleep < grace:
            found.append(f"{name}: preStop sleep {sleep} s is not in [5, grace {grace})")
        if grace <= sleep + drain:
            found.append(f"{name}: grace {grace} s is not above preStop + drain {sleep + drain}")
        workers = env_of(app).get("LOCKGATE_WORKERS", {}).get("valueFrom", {})
        if workers.get("resourceFieldRef", {}).get("resource") != "limits.cpu":
            found.append(f"{name}: server workers are not sized to the CPU limit")
        if app.get("args", [None, None])[:1] != ["--service"]:
            found.append(f"{name}: does not run lockgate serve --service")
        for kind, present in (("Service", services), ("PodDisruptionBudget", budgets),
                              ("HorizontalPodAutoscaler", scalers)):  # fmt: skip
            if name not in present:
                found.append(f"{name}: no {kind}")
        scaler = scalers.get(name)
        if scaler is not None:
            metrics = {m["type"]: m for m in scaler["spec"]["metrics"]}
            pods = metrics.get("Pods", {}).get("pods", {}).get("metric", {}).get("name", "")
            if "Resource" not in metrics or not pods.startswith("http_requests"):
                found.append(f"{name}: the autoscaler does not read CPU and requests per pod")
            down = scaler["spec"].get("behavior", {}).get("scaleDown", {})
            if down.get("stabilizationWindowSeconds", 0) < 60:
                found.append(f"{name}: no scale-down stabilisation")
    for item in objects:
        if item["kind"] == "Secret":
            found.append(f"a Secret is written: {item['metadata']['name']}")
    for key, value in config.items():
        if SECRET_NAMES.search(key) or re.search(r"://[^/@\s]+:[^/@\s]+@", value):
            found.append(f"ConfigMap: {key} looks secret")
    return found


@pytest.mark.parametrize("overlay", sorted(OVERLAYS))
def test_every_deployment_is_safe_to_roll_and_holds_no_secret(overlay: str) -> None:
    manifest = fleet()
    objects = build_overlay(manifest, overlay)
    assert problems(objects, manifest) == []
    deployments = by_kind(objects, "Deployment")
    # Every pool of the manifest, its replicas (dev: one of each), and the worker.
    expected = {
        ("users" if p.version is None else f"users-v{p.version}")
        if p.service == "users" else p.service: p.replicas
        for p in pools(manifest)
    }  # fmt: skip
    expected |= {w.name: w.replicas for w in manifest.workers}
    replicas = {name: d["spec"]["replicas"] for name, d in deployments.items()}
    assert replicas == (dict.fromkeys(expected, 1) if overlay == "dev" else expected)
    assert expected["users"] == 2 and expected["users-v1"] == 1
    namespaces = {o["metadata"].get("namespace") for o in objects}
    assert namespaces == {OVERLAYS[overlay].namespace}
    images = {
        c["image"] for d in deployments.values()
        for c in d["spec"]["template"]["spec"]["containers"]
    }  # fmt: skip
    assert images == {f"ghcr.io/lockgate/lockgate:{OVERLAYS[overlay].tag}"}


@pytest.mark.parametrize(
    ("breakage", "words"),
    [
        (lambda d: d["users"]["spec"]["strategy"]["rollingUpdate"].update(maxUnavailable=1),
         "users: rolling update"),
        (lambda d: d["orders"]["spec"]["template"]["spec"]["containers"][0].pop("readinessProbe"),
         "orders: probes"),
        (lambda d: d["users"]["spec"]["template"]["spec"].update(
            terminationGracePeriodSeconds=PRESTOP_SECONDS), "users: preStop sleep"),
        (lambda d: d["auth"]["spec"]["template"]["spec"]["containers"][0]["env"].append(
            {"name": "LOCKGATE_ORDERS_CLIENT_SECRET", "value": "hunter2"}),
         "LOCKGATE_ORDERS_CLIENT_SECRET is not a secretKeyRef"),
        (lambda d: d["worker"]["spec"]["template"]["spec"].update(
            terminationGracePeriodSeconds=30), "worker: grace"),
        (lambda d: d["users-v1"]["spec"]["template"]["spec"]["containers"][0][
            "securityContext"].update(readOnlyRootFilesystem=False),
         "users-v1/app: securityContext"),
    ],
)  # fmt: skip
def test_the_invariants_catch_a_broken_deployment(breakage: Any, words: str) -> None:
    manifest = fleet()
    objects = build_overlay(manifest, "prod")
    breakage(by_kind(objects, "Deployment"))
    assert any(words in problem for problem in problems(objects, manifest)), words


def test_the_grace_period_covers_the_prestop_sleep_and_the_drain() -> None:
    deployment = by_kind(build_overlay(fleet(), "prod"), "Deployment")["users"]
    pod = deployment["spec"]["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] > PRESTOP_SECONDS + DRAIN_DELAY + GRACEFUL_TIMEOUT


def test_the_migration_job_runs_before_the_services_start() -> None:
    manifest = fleet()
    objects = build_overlay(manifest, "prod")
    job = by_kind(objects, "Job")["lockgate-migrate"]
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == ["lockgate", "db", "upgrade"]
    assert env_of(container)["DATABASE_URL"]["valueFrom"]["secretKeyRef"]["name"]
    for name, deployment in by_kind(objects, "Deployment").items():
        pod = deployment["spec"]["template"]["spec"]
        if deployment["metadata"]["labels"]["app.kubernetes.io/component"] != "service":
            continue
        # Its pods wait for the schema their code knows; the old ones keep serving.
        init = pod["initContainers"][0]["command"]
        assert init[:4] == ["lockgate", "db", "wait", "--service"], name


def test_only_the_gateway_reaches_the_services_and_only_their_users_the_data() -> None:
    manifest = fleet()
    objects = build_overlay(manifest, "prod")
    policies = by_kind(objects, "NetworkPolicy")
    assert policies["default-deny-ingress"]["spec"] == {"podSelector": {},
                                                       "policyTypes": ["Ingress"]}  # fmt: skip
    gateway_name = "gateway.envoyproxy.io/owning-gateway-name"
    for service in manifest.services:
        sources = policies[f"{service.name}-ingress"]["spec"]["ingress"][0]["from"]
        assert any(gateway_name in s.get("podSelector", {}).get("matchLabels", {})
                   for s in sources)  # fmt: skip
        callers = {
            s["podSelector"]["matchLabels"].get("lockgate.dev/service")
            or s["podSelector"]["matchLabels"].get("lockgate.dev/pool")
            for s in sources if "namespaceSelector" not in s
        }  # fmt: skip
        if service.name == "users":
            # orders checks that a user exists, and so does its confirmation job.
            assert callers == {"orders", "worker"}
    deployments = by_kind(objects, "Deployment")
    for store in ("postgresql", "redis", "rabbitmq"):
        rule = policies[f"{store}-ingress"]["spec"]["ingress"][0]["from"]
        users = [{"podSelector": {"matchLabels": {
            "app.kubernetes.io/name": "lockgate", f"lockgate.dev/{store}": "true"}}}]  # fmt: skip
        # KEDA's operator reads the broker's queue lengths for the worker's scaler.
        keda = [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "keda"}}}]
        assert rule == (users + keda if store == "rabbitmq" else users)
    labels = deployments["auth"]["spec"]["template"]["metadata"]["labels"]
    assert "lockgate.dev/rabbitmq" not in labels  # auth has no jobs: no way to the broker
    assert labels["lockgate.dev/postgresql"] == "true"


def test_the_gateway_routes_are_in_the_kustomization_and_reach_real_services() -> None:
    objects = build_overlay(fleet(), "prod")
    services = set(by_kind(objects, "Service"))
    for route in by_kind(objects, "HTTPRoute").values():
        for rule in route["spec"]["rules"]:
            for ref in rule["backendRefs"]:
                assert ref["name"] in services
    names = {name for group in base_resources(fleet()).values() for name in
             (o["metadata"]["name"] for o in group)}  # fmt: skip
    assert "lockgate" in names  # the Gateway


def test_the_worker_scales_on_its_queues_in_prod() -> None:
    manifest = fleet()
    objects = build_overlay(manifest, "prod")
    scaled = by_kind(objects, "ScaledObject")["worker"]
    assert scaled["spec"]["scaleTargetRef"]["name"] == "worker"
    queues = {t["metadata"]["queueName"] for t in scaled["spec"]["triggers"]}
    assert queues == set(manifest.workers[0].queues)
    assert all(t["authenticationRef"]["name"] == "lockgate-broker"
               for t in scaled["spec"]["triggers"])  # fmt: skip
    assert "ScaledObject" not in {o["kind"] for o in build_overlay(manifest, "dev")}


def test_compose_runs_every_pool_behind_the_gateway_with_health_gates() -> None:
    manifest = fleet()
    compose = yaml.safe_load((ROOT / "deploy" / "compose" / "compose.yaml").read_text())
    services = compose["services"]
    assert {"gateway", "postgres", "redis", "rabbitmq", "migrate", "worker"} <= set(services)
    for pool in pools(manifest):
        name = pool.service if pool.version is None else f"{pool.service}-v{pool.version}"
        entry = services[name]
        assert entry["deploy"]["replicas"] == pool.replicas
        assert entry["command"] == ["--service", pool.service]
        assert entry["depends_on"]["migrate"] == {"condition": "service_completed_successfully"}
        assert entry["depends_on"]["postgres"] == {"condition": "service_healthy"}
        assert "/readyz" in " ".join(entry["healthcheck"]["test"])
        assert services["gateway"]["depends_on"][name] == {"condition": "service_healthy"}
        assert entry["read_only"] is True
    text = (ROOT / "deploy" / "compose" / "compose.yaml").read_text()
    # Secrets come from the environment at `docker compose up`, never the file.
    assert "${POSTGRES_PASSWORD:?" in text
    assert not re.search(r"PASSWORD: (?!'?\$\{)", text)
    conf = (ROOT / "deploy" / "compose" / "nginx.conf").read_text()
    assert "server users:8000 " in conf and "server users-v1:8000 " in conf


def test_a_lone_replica_with_the_rendered_settings_makes_no_keys_and_no_client(
    tmp_path: Path,
) -> None:
    """A pod of a service runs with the ConfigMap's settings: it reads auth's
    keys over HTTP, so it never writes a key directory (a pod has none); and a
    calling service never makes a client of its own (its siblings would
    revoke it): without the one it is given it stops, saying how to make it."""
    config = by_kind(build_overlay(fleet(), "prod"), "ConfigMap")["lockgate-config"]["data"]
    env = {**os.environ, **config, "LOCKGATE_DATA_DIR": str(tmp_path / "data")}
    env.pop("LOCKGATE_ORDERS_CLIENT_ID", None)
    env.pop("LOCKGATE_ORDERS_CLIENT_SECRET", None)
    env["LOCKGATE_BIND"] = "127.0.0.1:1"  # never reached: both stop before serving
    env["LOCKGATE_MIGRATE"] = "true"
    orders = subprocess.run(
        [str(LOCKGATE), "serve", "--service", "orders"], cwd=ROOT, env=env,
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert orders.returncode == 1
    assert "LOCKGATE_ORDERS_CLIENT_ID and LOCKGATE_ORDERS_CLIENT_SECRET" in orders.stderr
    assert "lockgate clients create service:orders --scopes users:read" in orders.stderr
    assert not (tmp_path / "data" / "auth-keys").exists()
