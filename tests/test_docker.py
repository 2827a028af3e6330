"""The container files, checked without Docker or Kubernetes.

Nothing here builds an image or starts a container: CI has no engine. Instead the Dockerfile, compose file
and manifests are parsed, cross-checked against each other and against the repository, and every config
they ship is loaded with the proxy's own loader from a temporary tree laid out like the image's /app.
"""

from __future__ import annotations

import fnmatch
import json
import shlex
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from guardrail_proxy.app import create_app
from guardrail_proxy.loader import LoadedConfig, load_config

ROOT = Path(__file__).resolve().parent.parent
DOCKER = ROOT / "docker"
K8S = DOCKER / "k8s"
APP_CONFIG = "/app/config"
CONFIG_PATH = "/app/config/proxy.yaml"
PORT = 8080
OPS_PORT = 9090


# --- helpers ---------------------------------------------------------------------------------------------

def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) per instruction, with comments dropped and continuation lines joined."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in (DOCKER / "Dockerfile").read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line, pending = pending + line, ""
        word, _, rest = line.partition(" ")
        out.append((word.upper(), rest.strip()))
    assert not pending, "the Dockerfile ends inside a continued line"
    return out


def exec_form(args: str) -> list[str]:
    """A JSON exec-form argument list (`["a", "b"]`), or the shell form split like a shell would."""
    if args.startswith("["):
        value = json.loads(args)
        assert isinstance(value, list) and all(isinstance(v, str) for v in value), args
        return value
    return shlex.split(args)


def strip_flags(args: str) -> list[str]:
    """The words of an instruction without its leading --flags (COPY --from=..., HEALTHCHECK --interval=...)."""
    words = shlex.split(args)
    while words and words[0].startswith("--"):
        words.pop(0)
    return words


def dockerignore_patterns() -> list[str]:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    return [ln.strip() for ln in lines if ln.strip() and not ln.strip().startswith("#")]


def ignored(path: str, patterns: list[str]) -> bool:
    """Whether .dockerignore keeps `path` (relative to the context) out of the build context; no `!` rules."""
    path = path.strip("/")
    for pattern in patterns:
        pattern = pattern.strip("/")
        bare = pattern.removeprefix("**/")
        parts = path.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        if any(fnmatch.fnmatch(p, pattern) for p in prefixes):
            return True
        if pattern.startswith("**/") and any(fnmatch.fnmatch(part, bare) for part in parts):
            return True
    return False


def k8s_docs(name: str) -> list[dict[str, Any]]:
    docs = [d for d in yaml.safe_load_all((K8S / name).read_text()) if d is not None]
    assert docs, f"{name} holds no objects"
    for doc in docs:
        assert {"apiVersion", "kind", "metadata"} <= set(doc), f"{name}: {doc.get('kind')} lacks a header field"
    return docs


def k8s_one(name: str, kind: str) -> dict[str, Any]:
    found = [d for d in k8s_docs(name) if d["kind"] == kind]
    assert len(found) == 1, f"{name}: expected one {kind}, found {len(found)}"
    return found[0]


def container(pod_spec: dict[str, Any], name: str) -> dict[str, Any]:
    found = [c for c in pod_spec["containers"] if c["name"] == name]
    assert len(found) == 1, f"no container named {name}"
    return found[0]


def env_of(spec: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e for e in spec.get("env", [])}


def mirror_app(tmp: Path) -> Path:
    """tmp/app with the image's policy pack; returns the app directory."""
    app = tmp / "app"
    app.mkdir()
    shutil.copytree(ROOT / "teen_safety_policies", app / "teen_safety_policies")
    return app


def write_configmap_mount(app: Path, configmap: dict[str, Any], volume: dict[str, Any]) -> Path:
    """Lay the ConfigMap's keys out under app/config exactly as the volume's `items` would; returns proxy.yaml."""
    assert volume["configMap"]["name"] == configmap["metadata"]["name"]
    data = configmap["data"]
    for item in volume["configMap"]["items"]:
        assert item["key"] in data, f"volume item names missing ConfigMap key {item['key']}"
        target = app / "config" / item["path"]
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(data[item["key"]])
    return app / "config" / "proxy.yaml"


def config_volume(pod_spec: dict[str, Any], container_spec: dict[str, Any]) -> dict[str, Any]:
    mounts = [m for m in container_spec["volumeMounts"] if m["mountPath"] == APP_CONFIG]
    assert len(mounts) == 1, f"nothing mounted at {APP_CONFIG}"
    assert mounts[0].get("readOnly") is True
    volumes = {v["name"]: v for v in pod_spec["volumes"]}
    return volumes[mounts[0]["name"]]


def app_paths(config: LoadedConfig) -> set[str]:
    return {getattr(r, "path", "") for r in create_app(config).routes}


def urls_in(command: list[str]) -> str:
    return " ".join(command)


# --- Dockerfile and .dockerignore --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def instructions() -> list[tuple[str, str]]:
    return dockerfile_instructions()


def test_dockerfile_starts_from_python_slim(instructions: list[tuple[str, str]]) -> None:
    froms = [args for word, args in instructions if word == "FROM"]
    assert froms, "no FROM"
    assert instructions[0][0] == "FROM"
    assert all(f.split()[0] == "python:3.11-slim" for f in froms)


def test_dockerfile_runs_as_non_root(instructions: list[tuple[str, str]]) -> None:
    final = [i for i, (word, _) in enumerate(instructions) if word == "FROM"][-1]
    users = [args for word, args in instructions[final:] if word == "USER"]
    assert users, "the final stage has no USER"
    user = users[-1].split(":")[0]
    assert user not in {"root", "0"}
    assert user.isdigit(), "a numeric UID lets Kubernetes' runAsNonRoot verify it"


def test_dockerfile_env_expose_healthcheck_cmd(instructions: list[tuple[str, str]]) -> None:
    env = " ".join(args for word, args in instructions if word == "ENV")
    assert "LITELLM_LOCAL_MODEL_COST_MAP=True" in env
    assert "PYTHONUNBUFFERED=1" in env
    assert [args for word, args in instructions if word == "EXPOSE"] == [str(PORT)]

    checks = [args for word, args in instructions if word == "HEALTHCHECK"]
    assert len(checks) == 1
    probe = checks[0].split("CMD", 1)[1].strip()
    assert f"127.0.0.1:{PORT}/healthz" in probe
    assert "urllib" in probe and "curl" not in probe, "python:3.11-slim has no curl"

    cmds = [args for word, args in instructions if word == "CMD"]
    assert len(cmds) == 1
    cmd = exec_form(cmds[0])
    assert cmd[:2] == ["guardrail-proxy", "serve"]
    assert cmd[cmd.index("--host") + 1] == "0.0.0.0"
    assert cmd[cmd.index("--config") + 1] == CONFIG_PATH


def test_dockerfile_copy_sources_exist_and_are_in_the_context(instructions: list[tuple[str, str]]) -> None:
    patterns = dockerignore_patterns()
    sources: list[str] = []
    for word, args in instructions:
        if word not in {"COPY", "ADD"} or "--from=" in args:
            continue
        words = exec_form(args) if args.startswith("[") else strip_flags(args)
        sources += words[:-1]
    assert sources, "no COPY from the build context"
    for source in sources:
        assert (ROOT / source).exists(), f"COPY source {source} is not in the repository"
        assert not ignored(source, patterns), f"COPY source {source} is excluded by .dockerignore"
    for needed in ["pyproject.toml", "README.md", "guardrail_proxy", "config", "teen_safety_policies"]:
        assert any(s.rstrip("/") == needed for s in sources), f"the image does not get {needed}"


def test_dockerfile_installs_without_dev_extras(instructions: list[tuple[str, str]]) -> None:
    runs = " ".join(args for word, args in instructions if word == "RUN")
    assert "pip install" in runs
    assert "[dev]" not in runs and "-e " not in runs and "dev.lock" not in runs


def test_dockerfile_installs_from_the_lock(instructions: list[tuple[str, str]]) -> None:
    """Every pip install in the image is either the hash-checked lock or the package itself with --no-deps,
    so the image gets exactly the versions the suite passed with."""
    installs = [args for word, args in instructions if word == "RUN" and "pip install" in args]
    assert any("--require-hashes" in a and "requirements/runtime.lock" in a for a in installs)
    for args in installs:
        for command in args.split("&&"):
            if "pip install" not in command:
                continue
            locked = "--require-hashes" in command and "-r requirements/runtime.lock" in command
            own = "--no-deps" in command and "--no-build-isolation" in command
            assert locked or own, f"unpinned install in the Dockerfile: {command.strip()}"
    copied = [a for word, a in instructions if word == "COPY"]
    assert any("requirements/runtime.lock" in a for a in copied)


def test_the_locks_pin_every_package_with_hashes() -> None:
    """The README's install command and the image rely on each lock pinning (==) and hashing every line."""
    for name in ("dev.lock", "runtime.lock"):
        text = (ROOT / "requirements" / name).read_text()
        entries = [e for e in text.replace("\\\n", " ").splitlines() if e.strip() and not e.lstrip().startswith("#")]
        assert entries, f"{name} is empty"
        for entry in entries:
            assert "==" in entry and "--hash=sha256:" in entry, f"{name}: not pinned and hashed: {entry[:80]}"
    runtime = (ROOT / "requirements" / "runtime.lock").read_text()
    assert "pytest==" not in runtime, "the runtime lock must not carry the test tools"


def test_dockerignore_excludes_repo_clutter() -> None:
    patterns = dockerignore_patterns()
    for path in [".git", ".venv", "tests", "bench/results", "eval-results", ".guardrail-cache", ".pytest_cache",
                 "guardrail_proxy/__pycache__"]:
        assert ignored(path, patterns), f".dockerignore does not exclude {path}"


def test_ignored_helper() -> None:
    assert ignored("a/b/__pycache__/x.pyc", ["**/__pycache__"])
    assert ignored("bench/results/run.json", ["bench/results"])
    assert not ignored("bench/run.py", ["bench/results"])
    assert not ignored("README.md", [".git"])


# --- compose -------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load((DOCKER / "compose.yaml").read_text())
    assert isinstance(data, dict)
    return data


def test_compose_safeguard_serves_the_classifier_on_a_gpu(compose: dict[str, Any]) -> None:
    safeguard = compose["services"]["safeguard"]
    assert safeguard["image"].startswith("vllm/vllm-openai")
    command = [str(c) for c in safeguard["command"]]
    assert "openai/gpt-oss-safeguard-20b" in command
    assert command[command.index("--port") + 1] == "8000"
    devices = safeguard["deploy"]["resources"]["reservations"]["devices"]
    assert any("gpu" in d.get("capabilities", []) for d in devices)
    assert "/health" in urls_in(safeguard["healthcheck"]["test"])
    named_volumes = set(compose.get("volumes") or {})
    sources = {v.split(":")[0] for v in safeguard["volumes"]}
    assert sources & named_volumes, "the HF cache should be a named volume"


def test_compose_proxy_builds_mounts_and_waits(compose: dict[str, Any]) -> None:
    proxy = compose["services"]["proxy"]
    base = DOCKER  # compose resolves relative paths from the compose file's directory
    context = (base / proxy["build"]["context"]).resolve()
    assert context == ROOT, "the build context must be the repository root"
    assert (context / proxy["build"]["dockerfile"]).resolve() == (DOCKER / "Dockerfile").resolve()
    assert f"{PORT}:{PORT}" in [str(p) for p in proxy["ports"]]
    assert proxy["depends_on"]["safeguard"]["condition"] == "service_healthy"
    assert "OPENAI_API_KEY" in proxy["environment"]
    mounts = [v.split(":") for v in proxy["volumes"]]
    config_mounts = [m for m in mounts if m[1] == APP_CONFIG]
    assert len(config_mounts) == 1 and config_mounts[0][2:] == ["ro"]
    assert (base / config_mounts[0][0]).resolve() == (DOCKER / "config").resolve()


def test_compose_config_loads_as_mounted_in_the_image(tmp_path: Path, compose: dict[str, Any]) -> None:
    app = mirror_app(tmp_path)
    shutil.copytree(DOCKER / "config", app / "config")
    config = load_config(app / "config" / "proxy.yaml")

    proxy = config.proxy
    assert proxy.server.host == "0.0.0.0" and proxy.server.port == PORT
    assert "safeguard" in compose["services"]
    assert {c.base_url for c in proxy.classifiers.values()} == {"http://safeguard:8000/v1"}
    assert proxy.policies.dirs == ("../teen_safety_policies",)
    used_policies = {rule.id for route in config.routes for rule in route.policies}
    assert used_policies <= set(config.policies)
    secrets = {u.api_key_env for u in proxy.upstreams.values()} - {None}
    assert secrets <= set(compose["services"]["proxy"]["environment"])


def test_compose_route_matches_the_repo_default_route() -> None:
    shipped = yaml.safe_load((DOCKER / "config" / "routes" / "default.yaml").read_text())
    local = yaml.safe_load((ROOT / "config" / "routes" / "default.yaml").read_text())
    assert shipped == local


# --- Kubernetes ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["configmap.yaml", "deployment.yaml", "service.yaml", "sidecar-example.yaml"])
def test_k8s_manifest_parses(name: str) -> None:
    k8s_docs(name)


@pytest.fixture(scope="module")
def configmap() -> dict[str, Any]:
    cm = k8s_one("configmap.yaml", "ConfigMap")
    assert all("/" not in key for key in cm["data"]), "ConfigMap keys cannot hold '/'"
    return cm


@pytest.fixture(scope="module")
def deployment() -> dict[str, Any]:
    return k8s_one("deployment.yaml", "Deployment")


def test_deployment_probes_security_and_secret(deployment: dict[str, Any]) -> None:
    pod = deployment["spec"]["template"]["spec"]
    proxy = container(pod, "proxy")
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert proxy["securityContext"]["allowPrivilegeEscalation"] is False
    assert proxy["resources"]["requests"] and proxy["resources"]["limits"]

    ports = {p["name"]: p["containerPort"] for p in proxy["ports"]}
    assert ports == {"http": PORT, "ops": OPS_PORT}
    readiness, liveness = proxy["readinessProbe"]["httpGet"], proxy["livenessProbe"]["httpGet"]
    assert readiness["path"] == "/readyz" and liveness["path"] == "/healthz"
    assert readiness["port"] in ("ops", OPS_PORT) and liveness["port"] in ("http", PORT)
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == str(OPS_PORT)

    secret = env_of(proxy)["OPENAI_API_KEY"]["valueFrom"]["secretKeyRef"]
    assert secret["name"] and secret["key"] == "OPENAI_API_KEY"
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert selector.items() <= deployment["spec"]["template"]["metadata"]["labels"].items()


def test_service_selects_the_deployment(deployment: dict[str, Any]) -> None:
    service = k8s_one("service.yaml", "Service")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    proxy = container(deployment["spec"]["template"]["spec"], "proxy")
    names = {p["name"] for p in proxy["ports"]}
    for port in service["spec"]["ports"]:
        assert port["targetPort"] in names or port["targetPort"] == PORT
        assert port["targetPort"] not in ("ops", OPS_PORT), "the operator endpoints stay off the Service"


def test_deployment_config_loads_and_probes_are_app_routes(tmp_path: Path, deployment: dict[str, Any],
                                                          configmap: dict[str, Any]) -> None:
    pod = deployment["spec"]["template"]["spec"]
    proxy = container(pod, "proxy")
    app = mirror_app(tmp_path)
    config = load_config(write_configmap_mount(app, configmap, config_volume(pod, proxy)))
    assert config.proxy.server.port == PORT and config.proxy.server.ops_port == OPS_PORT
    server = config.proxy.server  # the pod outlives the drain and the shutdown deadline
    assert pod["terminationGracePeriodSeconds"] > server.drain_s + server.shutdown_timeout_s
    assert {r.name for r in config.routes} == {"default"}
    secrets = {u.api_key_env for u in config.proxy.upstreams.values()} - {None}
    assert secrets <= set(env_of(proxy))

    paths = app_paths(config)
    for probe in ("readinessProbe", "livenessProbe"):
        assert proxy[probe]["httpGet"]["path"] in paths


def test_configmap_route_matches_the_repo_default_route(configmap: dict[str, Any]) -> None:
    shipped = yaml.safe_load(configmap["data"]["routes-default.yaml"])
    local = yaml.safe_load((ROOT / "config" / "routes" / "default.yaml").read_text())
    assert shipped == local


def test_sidecar_points_the_app_at_the_proxy(tmp_path: Path, configmap: dict[str, Any]) -> None:
    workload = next(d for d in k8s_docs("sidecar-example.yaml") if d["kind"] in {"Deployment", "Pod"})
    pod = workload["spec"]["template"]["spec"] if workload["kind"] == "Deployment" else workload["spec"]
    app_container = container(pod, "app")
    sidecar = container(pod, "guardrail-proxy")

    assert env_of(app_container)["OPENAI_BASE_URL"]["value"] == f"http://127.0.0.1:{PORT}/v1"
    assert "secretKeyRef" not in json.dumps(env_of(app_container)), "the app must not hold the upstream key"
    assert env_of(sidecar)["OPENAI_API_KEY"]["valueFrom"]["secretKeyRef"]["key"] == "OPENAI_API_KEY"

    argv = sidecar.get("command", []) + sidecar.get("args", [])
    assert argv[:2] == ["guardrail-proxy", "serve"]
    assert argv[argv.index("--host") + 1] == "127.0.0.1"
    assert argv[argv.index("--config") + 1] == CONFIG_PATH
    if "--port" in argv:
        assert argv[argv.index("--port") + 1] == str(PORT)

    root = tmp_path / "sidecar"
    root.mkdir()
    config = load_config(write_configmap_mount(mirror_app(root), configmap, config_volume(pod, sidecar)))
    paths = app_paths(config)
    # /readyz lives on the ops port when the config sets one (ops.py); /healthz answers on both.
    assert config.proxy.server.ops_port == OPS_PORT
    for probe, path, port in (("readinessProbe", "/readyz", OPS_PORT), ("livenessProbe", "/healthz", PORT)):
        command = urls_in(sidecar[probe]["exec"]["command"])
        assert f"http://127.0.0.1:{port}{path}" in command
        assert path in paths
    server = config.proxy.server
    assert pod["terminationGracePeriodSeconds"] > server.drain_s + server.shutdown_timeout_s
