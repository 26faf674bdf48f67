"""Offline checks of the deployment files: Dockerfile, docker-compose.yml, deploy/k8s/.

Nothing here needs Docker or a cluster: the kustomize overlays are rendered with
kustomize (tests/k8s_render.py), the files parsed with PyYAML and cross-checked
against each other and against the repository layout; docker-compose.yml is
validated against the Compose specification's schema. Each checker returns a
list of problems, so the self-tests at the end can feed it broken input and
prove that it really fails. tests/test_k8s_overlays.py checks what only the
production overlay has (Strimzi, CloudNativePG, NetworkPolicies, ...).
"""

from __future__ import annotations

import functools
import json
import posixpath
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from tests.k8s_render import OPERATOR_SECRETS, OVERLAYS, render

ROOT = Path(__file__).resolve().parents[1]
K8S_DIR = ROOT / "deploy" / "k8s"
# The directories holding kustomizations (the CRDs in deploy/k8s/crds are test data).
KUSTOMIZE_DIRS = [K8S_DIR / "base", *(K8S_DIR / "overlays" / o for o in OVERLAYS)]
SECRET_EXAMPLE = K8S_DIR / "overlays" / "dev" / "secret.example.yaml"
COMPOSE_FILE = ROOT / "docker-compose.yml"
COMPOSE_SCHEMA = ROOT / "deploy" / "compose" / "compose-spec.json"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"

# service name -> port, as decided for the application.
SERVICES: dict[str, int] = {"intake": 8001, "scheduling": 8002, "outcomes": 8003}
# Unprefixed settings every service reads (Kafka's client options, prometheus-client's
# multiprocess directory); OTEL_* are OpenTelemetry's standard variables.
SHARED_ENV = frozenset(
    {
        "KAFKA_BOOTSTRAP_SERVERS",
        "KAFKA_SECURITY_PROTOCOL",
        "KAFKA_SASL_MECHANISM",
        "KAFKA_SASL_USERNAME",
        "KAFKA_SASL_PASSWORD",
        "KAFKA_SSL_CAFILE",
        "PROMETHEUS_MULTIPROC_DIR",
    }
)
APP_IMAGE = "clinical-fhir"
SERVICE_MODULE = re.compile(r"^services\.([A-Za-z_][A-Za-z0-9_]*)$")
WORKLOAD_KINDS = frozenset({"Deployment", "StatefulSet"})

_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

Doc = dict[str, Any]


# --------------------------------------------------------------------------- #
# loading


@functools.cache
def load_documents(path: Path) -> tuple[Any, ...]:
    """All non-empty YAML documents of a file."""
    with path.open(encoding="utf-8") as handle:
        return tuple(doc for doc in yaml.load_all(handle, Loader=_LOADER) if doc)


def all_yaml_files() -> list[Path]:
    """Every YAML file this test module is responsible for."""
    files = sorted((ROOT / "deploy").rglob("*.yaml")) + sorted((ROOT / "deploy").rglob("*.yml"))
    return [*files, COMPOSE_FILE]


def kustomization(directory: Path) -> Doc:
    """The parsed kustomization.yaml of a directory."""
    (doc,) = load_documents(directory / "kustomization.yaml")
    return doc


def kustomize_references(directory: Path) -> list[Path]:
    """The resources and patch files a kustomization names (resolved)."""
    doc = kustomization(directory)
    paths = [directory / entry for entry in doc.get("resources", [])]
    paths += [directory / patch["path"] for patch in doc.get("patches", []) if "path" in patch]
    return [path.resolve() for path in paths]


def k8s_docs(overlay: str = "dev") -> list[Doc]:
    """Every object that `kubectl apply -k deploy/k8s/overlays/<overlay>` creates."""
    return render(overlay)


def of_kind(docs: list[Doc], kind: str) -> list[Doc]:
    """The documents of one kind."""
    return [doc for doc in docs if doc.get("kind") == kind]


def name_of(doc: Doc) -> str:
    """metadata.name, or '' when missing."""
    return str((doc.get("metadata") or {}).get("name", ""))


def pod_spec(workload: Doc) -> Doc:
    """spec.template.spec of a Deployment/StatefulSet."""
    return workload.get("spec", {}).get("template", {}).get("spec", {}) or {}


def all_containers(workload: Doc) -> list[Doc]:
    """initContainers followed by containers."""
    spec = pod_spec(workload)
    return [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]


def iter_secret_key_refs(docs: list[Doc]) -> Iterator[tuple[str, str, str]]:
    """(env var name, secret name, key) for every secretKeyRef in the workloads."""
    for workload in docs:
        if workload.get("kind") not in WORKLOAD_KINDS:
            continue
        for container in all_containers(workload):
            for env in container.get("env") or []:
                ref = (env.get("valueFrom") or {}).get("secretKeyRef")
                if ref is not None:
                    yield env.get("name", ""), ref.get("name", ""), ref.get("key", "")


def deployment_for(name: str, overlay: str = "dev") -> Doc:
    """The Deployment of one service."""
    matches = [d for d in of_kind(k8s_docs(overlay), "Deployment") if name_of(d) == name]
    assert len(matches) == 1, f"expected exactly one Deployment {name!r}"
    return matches[0]


# --------------------------------------------------------------------------- #
# checkers (each returns a list of human-readable problems)


def identity_problems(doc: Any) -> list[str]:
    """A Kubernetes object needs apiVersion, kind and metadata.name."""
    if not isinstance(doc, dict):
        return [f"not a mapping: {doc!r:.60}"]
    problems = [
        f"missing {field}"
        for field in ("apiVersion", "kind")
        if not isinstance(doc.get(field), str) or not doc.get(field)
    ]
    if not name_of(doc):
        problems.append(f"{doc.get('kind', '?')} without metadata.name")
    return problems


def container_port_refs(container: Doc) -> set[str | int]:
    """Names and numbers by which a probe may refer to a container port."""
    refs: set[str | int] = set()
    for port in container.get("ports") or []:
        refs.add(port["containerPort"])
        if "name" in port:
            refs.add(port["name"])
    return refs


def probe_problems(workload: Doc) -> list[str]:
    """Liveness/startup on /healthz, readiness on /readyz, on an exposed port."""
    expected = {
        "livenessProbe": "/healthz",
        "startupProbe": "/healthz",
        "readinessProbe": "/readyz",
    }
    problems: list[str] = []
    for container in pod_spec(workload).get("containers") or []:
        label = f"{name_of(workload)}/{container.get('name')}"
        ports = container_port_refs(container)
        for probe_name, path in expected.items():
            http_get = (container.get(probe_name) or {}).get("httpGet")
            if http_get is None:
                problems.append(f"{label}: no httpGet {probe_name}")
                continue
            if http_get.get("path") != path:
                problems.append(f"{label}: {probe_name} path is {http_get.get('path')}")
            if http_get.get("port") not in ports:
                problems.append(
                    f"{label}: {probe_name} port {http_get.get('port')!r} "
                    f"is not one of the container ports {sorted(map(str, ports))}"
                )
    return problems


def module_problems(module: str, root: Path = ROOT) -> list[str]:
    """`services.<name>` must be a valid module name whose folder exists."""
    match = SERVICE_MODULE.match(module)
    if match is None or not match.group(1).isidentifier():
        return [f"{module!r} is not of the form services.<name>"]
    if not (root / "services" / match.group(1)).is_dir():
        return [f"{module!r}: folder services/{match.group(1)}/ does not exist"]
    return []


def command_problems(command: Any, action: str, service: str) -> list[str]:
    """`python -m services.<service> <action>`, with the module on disk."""
    if not isinstance(command, list) or len(command) != 4:
        return [f"command {command!r} is not [python, -m, services.<name>, action]"]
    python, flag, module, verb = command
    problems = module_problems(module)
    if (python, flag) != ("python", "-m"):
        problems.append(f"command {command!r} does not start with python -m")
    if module != f"services.{service}":
        problems.append(f"command runs {module!r}, expected services.{service}")
    if verb != action:
        problems.append(f"command action is {verb!r}, expected {action!r}")
    return problems


def hardening_problems(workload: Doc) -> list[str]:
    """Non-root, read-only root fs with an emptyDir /tmp, resources, no links."""
    spec = pod_spec(workload)
    problems: list[str] = []
    if (spec.get("securityContext") or {}).get("runAsNonRoot") is not True:
        problems.append("pod securityContext.runAsNonRoot is not true")
    if spec.get("enableServiceLinks") is not False:
        problems.append("enableServiceLinks is not false (INTAKE_PORT=tcp://... clash)")
    empty_dirs = {volume["name"] for volume in spec.get("volumes") or [] if "emptyDir" in volume}
    for container in all_containers(workload):
        label = container.get("name")
        security = container.get("securityContext") or {}
        if security.get("readOnlyRootFilesystem") is not True:
            problems.append(f"{label}: readOnlyRootFilesystem is not true")
        if security.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{label}: allowPrivilegeEscalation is not false")
        tmp_mounts = [
            mount
            for mount in container.get("volumeMounts") or []
            if mount.get("mountPath") == "/tmp"
        ]
        if not tmp_mounts or tmp_mounts[0].get("name") not in empty_dirs:
            problems.append(f"{label}: /tmp is not an emptyDir mount")
        resources = container.get("resources") or {}
        for section in ("requests", "limits"):
            missing = {"cpu", "memory"} - set(resources.get(section) or {})
            if missing:
                problems.append(f"{label}: resources.{section} lacks {sorted(missing)}")
    return problems


def secret_ref_problems(docs: list[Doc], secrets: list[Doc]) -> list[str]:
    """Every secretKeyRef must name a Secret and key shipped in the example."""
    available: dict[str, set[str]] = {}
    for secret in of_kind(secrets, "Secret"):
        keys = set(secret.get("data") or {}) | set(secret.get("stringData") or {})
        available.setdefault(name_of(secret), set()).update(keys)
    return [
        f"{env}: secret {name!r} key {key!r} is not in secret.example.yaml"
        for env, name, key in iter_secret_key_refs(docs)
        if key not in available.get(name, set())
    ]


def env_prefix_problems(service: str, names: list[str]) -> list[str]:
    """Env var names must carry the service prefix (or be a shared one)."""
    prefix = f"{service.upper()}_"
    return [
        f"{service}: env var {name!r} lacks prefix {prefix}"
        for name in names
        if not name.startswith((prefix, "OTEL_")) and name not in SHARED_ENV
    ]


def compose_env_names(service: Doc) -> list[str]:
    """Names of a compose service's environment, in dict or list form."""
    environment = service.get("environment") or {}
    if isinstance(environment, dict):
        return [str(name) for name in environment]
    return [str(item).split("=", 1)[0] for item in environment]


def compose_depends_on(service: Doc) -> dict[str, str | None]:
    """depends_on as {name: condition}, from the list or the mapping form."""
    depends = service.get("depends_on") or {}
    if isinstance(depends, list):
        return {str(name): None for name in depends}
    return {str(name): (spec or {}).get("condition") for name, spec in depends.items()}


def compose_host_ports(service: Doc) -> list[str]:
    """Published host ports of a compose service (short and long syntax)."""
    published: list[str] = []
    for port in service.get("ports") or []:
        if isinstance(port, dict):
            if port.get("published") is not None:
                published.append(str(port["published"]))
            continue
        parts = str(port).split("/", 1)[0].split(":")
        if len(parts) >= 2:
            published.append(parts[-2])
    return published


def compose_problems(compose: Doc) -> list[str]:
    """depends_on targets, unique host ports, env prefixes, healthchecks."""
    services: dict[str, Doc] = compose.get("services") or {}
    problems: list[str] = []
    seen_ports: dict[str, str] = {}
    for name, service in services.items():
        for target, condition in compose_depends_on(service).items():
            if target not in services:
                problems.append(f"{name}: depends_on unknown service {target!r}")
                continue
            if condition == "service_completed_successfully":
                # A one-shot job (e.g. fixing a volume's owner): it must not restart.
                if str(services[target].get("restart", "no")) != "no":
                    problems.append(f"{name}: depends_on {target}, a job that restarts")
                continue
            if condition != "service_healthy":
                problems.append(f"{name}: depends_on {target} is not service_healthy")
            if "healthcheck" not in services[target]:
                problems.append(f"{name}: depends_on {target}, which has no healthcheck")
        for port in compose_host_ports(service):
            if port in seen_ports:
                problems.append(f"{name}: host port {port} also used by {seen_ports[port]}")
            seen_ports[port] = name
        if name in SERVICES:
            problems += env_prefix_problems(name, compose_env_names(service))
            problems += command_problems(service.get("command"), "serve", name)
            if "healthcheck" not in service:
                problems.append(f"{name}: no healthcheck")
    return problems


def auth_env_problems(service: str, env: dict[str, str]) -> list[str]:
    """The settings without which a service does not start, or cannot call its peers."""
    prefix = service.upper()
    if str(env.get(f"{prefix}_AUTH_DISABLED", "")).lower() == "true":
        return [f"{service}: {prefix}_AUTH_DISABLED is true (every route open)"]
    problems = [
        f"{service}: {prefix}_{setting} is not set"
        + (" (the service refuses to start)" if setting == "AUTH_ISSUER" else "")
        for setting in ("AUTH_ISSUER", "AUTH_AUDIENCE", "AUTH_CLIENT_ID", "AUTH_CLIENT_KEY_FILE")
        if not str(env.get(f"{prefix}_{setting}") or "").strip()
    ]
    key_file = str(env.get(f"{prefix}_AUTH_CLIENT_KEY_FILE") or "")
    if key_file and not posixpath.isabs(key_file):
        problems.append(f"{service}: AUTH_CLIENT_KEY_FILE {key_file!r} is not absolute")
    return problems


def mounted_under(path: str, mount_path: str) -> str | None:
    """`path` relative to a mount point, or None when it is not inside it."""
    path, mount_path = posixpath.normpath(path), posixpath.normpath(mount_path)
    if path == mount_path or not path.startswith(mount_path.rstrip("/") + "/"):
        return None
    return path[len(mount_path.rstrip("/")) + 1 :]


def compose_volume_targets(service: Doc) -> dict[str, str]:
    """Container path -> source of a compose service's volumes (short and long syntax)."""
    targets: dict[str, str] = {}
    for volume in service.get("volumes") or []:
        if isinstance(volume, dict):
            targets[str(volume.get("target", ""))] = str(volume.get("source", ""))
            continue
        parts = str(volume).split(":")
        if len(parts) >= 2:
            targets[parts[1]] = parts[0]
    return targets


def cli_options(command: list[str], option: str) -> list[str]:
    """The values of a repeatable `--option VALUE` / `--option=VALUE` in a command."""
    values: list[str] = []
    for index, arg in enumerate(command):
        if arg == option and index + 1 < len(command):
            values.append(command[index + 1])
        elif arg.startswith(option + "="):
            values.append(arg.split("=", 1)[1])
    return values


def compose_auth_problems(compose: Doc) -> list[str]:
    """Each service trusts the dev issuer, for an audience it issues, with a mounted key."""
    services: dict[str, Doc] = compose.get("services") or {}
    problems: list[str] = []
    for name in SERVICES:
        service = services.get(name) or {}
        env = {str(k): str(v) for k, v in (service.get("environment") or {}).items()}
        found = auth_env_problems(name, env)
        problems += found
        if found:
            continue
        prefix = name.upper()
        issuer_url = env[f"{prefix}_AUTH_ISSUER"]
        host = re.sub(r"^https?://", "", issuer_url).split("/")[0].split(":")[0]
        issuer = services.get(host)
        if issuer is None:
            problems.append(f"{name}: issuer {issuer_url!r} is no compose service")
        else:
            if host not in compose_depends_on(service):
                problems.append(f"{name}: does not depend on the issuer {host!r}")
            command = [str(arg) for arg in issuer.get("command") or []]
            if cli_options(command, "--issuer") != [issuer_url]:
                problems.append(f"{name}: {host} does not call itself {issuer_url!r}")
            audience = env[f"{prefix}_AUTH_AUDIENCE"]
            if audience not in cli_options(command, "--audience"):
                problems.append(f"{name}: audience {audience!r} is not one {host} issues for")
            port = SERVICES[name]
            if audience != f"http://localhost:{port}/fhir":
                problems.append(f"{name}: audience {audience!r} is not the host's FHIR base")
            issuer_dirs = cli_options(command, "--dir")
            client_id = env[f"{prefix}_AUTH_CLIENT_ID"]
            key_file = env[f"{prefix}_AUTH_CLIENT_KEY_FILE"]
            if posixpath.basename(key_file) != f"{client_id}.pem":
                problems.append(f"{name}: {key_file!r} is not the issuer's key of {client_id}")
            ours, theirs = compose_volume_targets(service), compose_volume_targets(issuer)
            mounts = [t for t in ours if mounted_under(key_file, t) is not None]
            if not mounts:
                problems.append(f"{name}: {key_file} is not inside a mounted volume")
                continue
            source = ours[mounts[0]]
            if not issuer_dirs or theirs.get(issuer_dirs[0]) != source:
                problems.append(f"{name}: volume {source!r} is not the issuer's --dir")
            elif mounted_under(key_file, mounts[0]) != posixpath.basename(key_file):
                problems.append(f"{name}: {key_file} is not at the top of the issuer's --dir")
    return problems


def k8s_auth_problems(
    deployment: Doc, configmaps: dict[str, Doc], secrets: list[Doc], audience: str
) -> list[str]:
    """The serve container has the auth settings and its client key is mounted from a
    Secret key shipped in secret.example.yaml."""
    service = name_of(deployment)
    spec = pod_spec(deployment)
    volumes = {volume.get("name"): volume for volume in spec.get("volumes") or []}
    available: dict[str, set[str]] = {}
    for secret in of_kind(secrets, "Secret"):
        keys = set(secret.get("data") or {}) | set(secret.get("stringData") or {})
        available.setdefault(name_of(secret), set()).update(keys)
    problems: list[str] = []
    for container in spec.get("containers") or []:
        env: dict[str, str] = {}
        for source in container.get("envFrom") or []:
            ref = (source.get("configMapRef") or {}).get("name")
            env.update(
                {str(k): str(v) for k, v in (configmaps.get(ref, {}).get("data") or {}).items()}
            )
        env.update({e["name"]: str(e.get("value", "<ref>")) for e in container.get("env") or []})
        found = auth_env_problems(service, env)
        problems += found
        if found:
            continue
        prefix = service.upper()
        if not env[f"{prefix}_AUTH_ISSUER"].startswith("https://"):
            problems.append(f"{service}: AUTH_ISSUER is not an https URL")
        if env[f"{prefix}_AUTH_AUDIENCE"] != audience:
            problems.append(
                f"{service}: AUTH_AUDIENCE {env[f'{prefix}_AUTH_AUDIENCE']!r}, "
                f"the Ingress serves {audience!r}"
            )
        try:
            proxies = json.loads(env.get(f"{prefix}_TRUSTED_PROXIES", ""))
        except ValueError:
            proxies = None
        if not isinstance(proxies, list) or not proxies:
            problems.append(f"{service}: TRUSTED_PROXIES is not a non-empty JSON list")
        key_file = env[f"{prefix}_AUTH_CLIENT_KEY_FILE"]
        located = [
            (mount, relative)
            for mount in container.get("volumeMounts") or []
            if (relative := mounted_under(key_file, mount.get("mountPath", ""))) is not None
        ]
        if not located:
            problems.append(f"{service}: {key_file} is not inside a volumeMount")
            continue
        mount, relative = located[0]
        if mount.get("readOnly") is not True:
            problems.append(f"{service}: the key's volumeMount is not readOnly")
        secret = (volumes.get(mount.get("name")) or {}).get("secret")
        if secret is None:
            problems.append(f"{service}: {key_file} is not mounted from a Secret")
            continue
        items = secret.get("items")
        paths = (
            {item["path"]: item["key"] for item in items}
            if items
            else {key: key for key in available.get(secret.get("secretName", ""), set())}
        )
        secret_key = paths.get(relative)
        if secret_key is None:
            problems.append(f"{service}: the Secret volume has no file {relative!r}")
        elif secret_key not in available.get(secret.get("secretName", ""), set()):
            problems.append(
                f"{service}: Secret {secret.get('secretName')!r} key {secret_key!r} "
                "is not in secret.example.yaml"
            )
    return problems


def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with comments and continuations folded."""
    logical: list[str] = []
    current = ""
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("#") or (not line and not current):
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        logical.append(current + line)
        current = ""
    if current:
        logical.append(current)
    pairs = []
    for line in logical:
        instruction, _, arguments = line.partition(" ")
        pairs.append((instruction.upper(), arguments.strip()))
    return pairs


def dockerfile_user_problems(text: str) -> list[str]:
    """The final USER must exist and must not be root (name or UID 0)."""
    users = [args for instruction, args in dockerfile_instructions(text) if instruction == "USER"]
    if not users:
        return ["Dockerfile has no USER instruction (runs as root)"]
    user = users[-1].split(":", 1)[0].strip()
    if user in {"root", "0", ""}:
        return [f"Dockerfile's final USER is {users[-1]!r}"]
    return []


# --------------------------------------------------------------------------- #
# YAML files and Kubernetes objects


@pytest.mark.parametrize("path", all_yaml_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_yaml_file_parses(path: Path) -> None:
    assert path.is_file(), f"{path} is missing"
    assert load_documents(path), f"{path} has no YAML documents"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_k8s_document_is_identified(overlay: str) -> None:
    problems = [
        f"{doc.get('kind')} {index}: {problem}"
        for index, doc in enumerate(k8s_docs(overlay))
        for problem in identity_problems(doc)
    ]
    assert not problems, problems


@pytest.mark.parametrize("directory", KUSTOMIZE_DIRS, ids=lambda p: p.name)
def test_kustomization_lists_existing_files_and_no_secrets(directory: Path) -> None:
    resources = kustomization(directory).get("resources", [])
    assert resources, f"{directory}/kustomization.yaml lists no resources"
    missing = [str(p) for p in kustomize_references(directory) if not p.exists()]
    assert not missing, f"kustomization names missing files: {missing}"
    assert len(set(resources)) == len(resources), "duplicate kustomization resources"
    assert SECRET_EXAMPLE.resolve() not in kustomize_references(directory)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlays_apply_no_secrets(overlay: str) -> None:
    assert not of_kind(k8s_docs(overlay), "Secret"), "Secrets are never applied from here"


def test_every_manifest_file_is_in_a_kustomization() -> None:
    referenced = {path for d in KUSTOMIZE_DIRS for path in kustomize_references(d)}
    forgotten = [
        str(p.relative_to(K8S_DIR))
        for d in KUSTOMIZE_DIRS
        for p in d.rglob("*.yaml")
        if p.resolve() not in referenced and p.name != "kustomization.yaml" and p != SECRET_EXAMPLE
    ]
    assert not forgotten, f"manifests no kustomization names: {forgotten}"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_object_names_are_unique_per_kind(overlay: str) -> None:
    keys = [(doc["kind"], name_of(doc)) for doc in k8s_docs(overlay)]
    duplicates = sorted({key for key in keys if keys.count(key) > 1})
    assert not duplicates, duplicates


@pytest.mark.parametrize("overlay", OVERLAYS)
@pytest.mark.parametrize("service", sorted(SERVICES))
def test_deployment_probes(service: str, overlay: str) -> None:
    problems = probe_problems(deployment_for(service, overlay))
    assert not problems, problems


@pytest.mark.parametrize("overlay", OVERLAYS)
@pytest.mark.parametrize("service", sorted(SERVICES))
def test_deployment_commands_and_migrate_init_container(service: str, overlay: str) -> None:
    deployment = deployment_for(service, overlay)
    spec = pod_spec(deployment)
    init = spec.get("initContainers") or []
    main = spec.get("containers") or []
    assert len(main) == 1, f"{service}: expected one app container"
    assert init, f"{service}: no migrate initContainer"
    problems = command_problems(main[0].get("command"), "serve", service)
    problems += command_problems(init[0].get("command"), "migrate", service)
    port = [p["containerPort"] for p in main[0].get("ports") or []]
    if port != [SERVICES[service]]:
        problems.append(f"{service}: container ports {port}, expected [{SERVICES[service]}]")
    assert not problems, problems


@pytest.mark.parametrize("overlay", OVERLAYS)
@pytest.mark.parametrize("service", sorted(SERVICES))
def test_deployment_hardening_and_replicas(service: str, overlay: str) -> None:
    deployment = deployment_for(service, overlay)
    # In prod the HorizontalPodAutoscaler owns the count (test_k8s_overlays.py).
    assert deployment["spec"].get("replicas") == (2 if overlay == "dev" else None)
    problems = hardening_problems(deployment)
    assert not problems, problems


@pytest.mark.parametrize("overlay", OVERLAYS)
@pytest.mark.parametrize("service", sorted(SERVICES))
def test_deployment_env_comes_from_configmap_and_secret(service: str, overlay: str) -> None:
    deployment = deployment_for(service, overlay)
    configmaps = {name_of(cm): cm for cm in of_kind(k8s_docs(overlay), "ConfigMap")}
    problems: list[str] = []
    for container in all_containers(deployment):
        names = [env["name"] for env in container.get("env") or []]
        for source in container.get("envFrom") or []:
            ref = (source.get("configMapRef") or {}).get("name")
            if ref not in configmaps:
                problems.append(f"{container['name']}: ConfigMap {ref!r} does not exist")
                continue
            names += list(configmaps[ref].get("data") or {})
            migrate = configmaps[ref].get("data", {}).get(f"{service.upper()}_MIGRATE_ON_START")
            if migrate != "false":
                problems.append(f"{ref}: MIGRATE_ON_START must be 'false' in k8s")
        problems += env_prefix_problems(service, names)
        database_url = f"{service.upper()}_DATABASE_URL"
        secret_envs = {env for env, _, _ in iter_secret_key_refs([deployment])}
        if database_url not in secret_envs:
            problems.append(f"{container['name']}: {database_url} is not a secretKeyRef")
    assert not problems, problems


def test_secret_key_refs_match_secret_example() -> None:
    refs = list(iter_secret_key_refs(k8s_docs()))
    assert refs, "no secretKeyRef found in the workloads"
    problems = secret_ref_problems(k8s_docs(), list(load_documents(SECRET_EXAMPLE)))
    assert not problems, problems


def test_services_select_pods_and_target_named_ports() -> None:
    docs = k8s_docs()
    workloads = [doc for doc in docs if doc.get("kind") in WORKLOAD_KINDS]
    problems: list[str] = []
    for service in of_kind(docs, "Service"):
        selector = service["spec"].get("selector") or {}
        targets = [
            w
            for w in workloads
            if selector
            and selector.items() <= (w["spec"]["template"]["metadata"]["labels"]).items()
        ]
        if not targets:
            problems.append(f"Service {name_of(service)} selects no workload")
            continue
        ports: set[str | int] = set()
        for workload in targets:
            for container in pod_spec(workload).get("containers") or []:
                ports |= container_port_refs(container)
        for port in service["spec"].get("ports") or []:
            if port.get("targetPort", port.get("port")) not in ports:
                problems.append(f"Service {name_of(service)}: bad targetPort {port}")
    for name in SERVICES:
        if name not in {name_of(s) for s in of_kind(docs, "Service")}:
            problems.append(f"no Service named {name}")
    assert not problems, problems


def test_pod_disruption_budgets_cover_each_service() -> None:
    docs = k8s_docs()
    covered = set()
    for pdb in of_kind(docs, "PodDisruptionBudget"):
        selector = pdb["spec"]["selector"]["matchLabels"]
        for deployment in of_kind(docs, "Deployment"):
            if selector.items() <= deployment["spec"]["selector"]["matchLabels"].items():
                covered.add(name_of(deployment))
    assert covered >= set(SERVICES), f"services without a PDB: {set(SERVICES) - covered}"


def test_kafka_statefulset_has_headless_service() -> None:
    docs = k8s_docs()
    (kafka,) = [s for s in of_kind(docs, "StatefulSet") if name_of(s) == "kafka"]
    headless = {
        name_of(s) for s in of_kind(docs, "Service") if s["spec"].get("clusterIP") == "None"
    }
    assert kafka["spec"]["serviceName"] in headless
    (container,) = pod_spec(kafka)["containers"]
    assert container["image"].startswith("apache/kafka:")
    assert pod_spec(kafka).get("enableServiceLinks") is False
    env = {e["name"]: e.get("value") for e in container.get("env") or []}
    assert "broker" in env.get("KAFKA_PROCESS_ROLES", "")
    assert "controller" in env.get("KAFKA_PROCESS_ROLES", "")
    assert env.get("CLUSTER_ID"), "KRaft needs CLUSTER_ID"
    assert kafka["spec"].get("volumeClaimTemplates"), "Kafka data must be persistent"


def test_ingress_routes_prefixes_with_forwarded_prefix() -> None:
    docs = k8s_docs()
    services = {name_of(s): s for s in of_kind(docs, "Service")}
    routed: dict[str, str] = {}
    problems: list[str] = []
    for ingress in of_kind(docs, "Ingress"):
        annotations = ingress["metadata"].get("annotations") or {}
        prefix = annotations.get("nginx.ingress.kubernetes.io/x-forwarded-prefix")
        for rule in ingress["spec"].get("rules") or []:
            for path in rule["http"]["paths"]:
                backend = path["backend"]["service"]
                target = services.get(backend["name"])
                if target is None:
                    problems.append(f"{name_of(ingress)}: no Service {backend['name']}")
                    continue
                port_refs = {p.get("name") for p in target["spec"]["ports"]} | {
                    p["port"] for p in target["spec"]["ports"]
                }
                wanted = backend["port"].get("name", backend["port"].get("number"))
                if wanted not in port_refs:
                    problems.append(f"{name_of(ingress)}: Service port {wanted} unknown")
                first_segment = "/" + path["path"].lstrip("/").split("(")[0].split("/")[0]
                if prefix != first_segment:
                    problems.append(
                        f"{name_of(ingress)}: x-forwarded-prefix {prefix!r} "
                        f"does not match path {path['path']!r}"
                    )
                routed[first_segment] = backend["name"]
    assert not problems, problems
    assert routed == {f"/{name}": name for name in SERVICES}


def ingress_fhir_bases() -> dict[str, str]:
    """service -> its public FHIR base through the Ingress (https://host/prefix/fhir)."""
    bases: dict[str, str] = {}
    for ingress in of_kind(k8s_docs(), "Ingress"):
        prefix = (ingress["metadata"].get("annotations") or {}).get(
            "nginx.ingress.kubernetes.io/x-forwarded-prefix", ""
        )
        for rule in ingress["spec"].get("rules") or []:
            for path in rule["http"]["paths"]:
                host = rule.get("host", "")
                bases[path["backend"]["service"]["name"]] = f"https://{host}{prefix}/fhir"
    return bases


def provided_secrets(overlay: str) -> list[Doc]:
    """The Secrets made outside the kustomization: dev's example, prod's operator-provided."""
    if overlay == "dev":
        return list(load_documents(SECRET_EXAMPLE))
    return [
        {"kind": "Secret", "metadata": {"name": name}, "data": dict.fromkeys(keys, "")}
        for name, keys in OPERATOR_SECRETS.items()
    ]


@pytest.mark.parametrize("overlay", OVERLAYS)
@pytest.mark.parametrize("service", sorted(SERVICES))
def test_deployment_auth_settings_and_client_key(service: str, overlay: str) -> None:
    configmaps = {name_of(cm): cm for cm in of_kind(k8s_docs(overlay), "ConfigMap")}
    audience = ingress_fhir_bases().get(service, "<no ingress>")
    assert not audience.startswith("https:///"), "the Ingress rules need a host"
    problems = k8s_auth_problems(
        deployment_for(service, overlay), configmaps, provided_secrets(overlay), audience
    )
    assert not problems, problems


def test_every_workload_running_a_service_has_an_issuer() -> None:
    """Not only the Deployments above: any workload that serves a service needs auth."""
    configmaps = {name_of(cm): cm for cm in of_kind(k8s_docs(), "ConfigMap")}
    problems: list[str] = []
    for workload in k8s_docs():
        if workload.get("kind") not in WORKLOAD_KINDS | {"Job", "CronJob"}:
            continue
        for container in pod_spec(workload).get("containers") or []:
            command = container.get("command") or []
            if len(command) != 4 or not SERVICE_MODULE.match(str(command[2])):
                continue
            service = str(command[2]).split(".", 1)[1]
            env: dict[str, str] = {}
            for source in container.get("envFrom") or []:
                ref = (source.get("configMapRef") or {}).get("name")
                env.update(configmaps.get(ref, {}).get("data") or {})
            env.update({e["name"]: "<set>" for e in container.get("env") or []})
            problems += [
                f"{name_of(workload)}: {p}"
                for p in auth_env_problems(service, env)
                if "AUTH_ISSUER" in p or "AUTH_DISABLED" in p
            ]
    assert not problems, problems


# --------------------------------------------------------------------------- #
# docker-compose.yml


def compose() -> Doc:
    """The parsed docker-compose.yml."""
    (doc,) = load_documents(COMPOSE_FILE)
    return doc


def compose_schema_problems(doc: Any) -> list[str]:
    """docker-compose.yml against the Compose specification's JSON Schema."""
    schema = json.loads(COMPOSE_SCHEMA.read_text(encoding="utf-8"))
    validator = jsonschema.Draft7Validator(schema)
    return [
        f"{'/'.join(map(str, error.path)) or '<top>'}: {error.message[:160]}"
        for error in validator.iter_errors(doc)
    ]


def test_compose_matches_the_compose_specification() -> None:
    problems = compose_schema_problems(compose())
    assert not problems, problems


def test_compose_is_consistent() -> None:
    problems = compose_problems(compose())
    assert not problems, problems


def test_compose_topics_have_the_kubernetes_partition_count() -> None:
    services = compose()["services"]
    counts = {
        str(services[name]["environment"][f"{name.upper()}_TOPIC_PARTITIONS"]) for name in SERVICES
    }
    counts.add(str(services["kafka"]["environment"]["KAFKA_NUM_PARTITIONS"]))
    configmaps = {name_of(cm): cm for cm in of_kind(k8s_docs(), "ConfigMap")}
    counts |= {configmaps[f"{n}-config"]["data"][f"{n.upper()}_TOPIC_PARTITIONS"] for n in SERVICES}
    assert counts == {"6"}, counts


def test_compose_has_backing_services_and_app_ports() -> None:
    services = compose()["services"]
    assert str(services["postgres"]["image"]).startswith("postgres:15")
    assert str(services["kafka"]["image"]).startswith("apache/kafka:")
    for name, port in SERVICES.items():
        assert compose_host_ports(services[name]) == [str(port)], name
        assert set(compose_depends_on(services[name])) >= {"postgres", "kafka"}, name


def test_compose_services_trust_the_dev_issuer_with_mounted_keys() -> None:
    services = compose()["services"]
    assert "issuer" in services, "no dev issuer service"
    assert "healthcheck" in services["issuer"]
    problems = compose_auth_problems(compose())
    for name in SERVICES:
        mounts = [str(v) for v in services[name].get("volumes") or [] if isinstance(v, str)]
        if not any(v.startswith("dev-auth:") and v.endswith(":ro") for v in mounts):
            problems.append(f"{name}: the dev-auth volume is not mounted read-only")
    assert not problems, problems


def test_compose_passwords_come_from_the_environment() -> None:
    problems: list[str] = []
    urls = 0
    for name, service in compose()["services"].items():
        environment = service.get("environment") or {}
        assert isinstance(environment, dict), f"{name}: use the mapping form"
        for key, value in environment.items():
            if "PASSWORD" in key and not str(value).startswith("${"):
                problems.append(f"{name}: {key} is hard-coded")
            if str(key).endswith("_DATABASE_URL"):
                urls += 1
                if "${POSTGRES_PASSWORD" not in str(value):
                    problems.append(f"{name}: {key} has a literal password")
    assert urls == len(SERVICES), "each service needs a *_DATABASE_URL"
    assert not problems, problems


def test_postgres_init_creates_one_database_per_service() -> None:
    mounts = " ".join(map(str, compose()["services"]["postgres"].get("volumes") or []))
    init = re.search(r"\./(deploy/[\w.-]+\.sql):", mounts)
    assert init, "postgres has no init script mounted from deploy/"
    sql = (ROOT / init.group(1)).read_text(encoding="utf-8")
    created = set(re.findall(r"(?i)create\s+database\s+(\w+)", sql))
    assert created >= set(SERVICES)
    for name in SERVICES:
        url = compose()["services"][name]["environment"][f"{name.upper()}_DATABASE_URL"]
        assert url.endswith(f"@postgres:5432/{name}"), url


# --------------------------------------------------------------------------- #
# Dockerfile and .dockerignore


def test_dockerfile_runs_as_non_root() -> None:
    problems = dockerfile_user_problems(DOCKERFILE.read_text(encoding="utf-8"))
    assert not problems, problems


def test_dockerfile_base_healthcheck_and_default_command() -> None:
    text = DOCKERFILE.read_text(encoding="utf-8")
    instructions = dockerfile_instructions(text)
    assert "python:3.11-slim" in text
    healthchecks = [args for name, args in instructions if name == "HEALTHCHECK"]
    assert len(healthchecks) == 1 and "/healthz" in healthchecks[0]
    assert "python" in healthchecks[0] and "curl" not in healthchecks[0]
    cmds = [args for name, args in instructions if name == "CMD"]
    assert cmds and "services.intake" in cmds[-1] and "serve" in cmds[-1]
    assert any(name == "RUN" and "pip install ." in args for name, args in instructions)


def test_dockerfile_bakes_in_no_secrets() -> None:
    for name, args in dockerfile_instructions(DOCKERFILE.read_text(encoding="utf-8")):
        if name in {"ENV", "ARG"}:
            assert not re.search(r"(?i)password|secret|token|_DATABASE_URL", args), args


def test_dockerignore_excludes_local_state() -> None:
    entries = {
        line.strip().rstrip("/")
        for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {".venv", "var", ".git"} <= entries
    assert any("__pycache__" in entry for entry in entries)


# --------------------------------------------------------------------------- #
# the checkers themselves must be able to fail


def _sample_deployment() -> Doc:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "intake"},
        "spec": {
            "template": {
                "spec": {
                    "containers": [
                        {
                            "name": "intake",
                            "ports": [{"name": "http", "containerPort": 8001}],
                            "livenessProbe": {"httpGet": {"path": "/healthz", "port": 8001}},
                            "startupProbe": {"httpGet": {"path": "/healthz", "port": "http"}},
                            "readinessProbe": {"httpGet": {"path": "/readyz", "port": 9999}},
                        }
                    ]
                }
            }
        },
    }


def test_checkers_reject_broken_k8s_input() -> None:
    assert identity_problems({"kind": "Service", "metadata": {}})
    probes = probe_problems(_sample_deployment())
    assert len(probes) == 1 and "readinessProbe port 9999" in probes[0]
    assert hardening_problems(_sample_deployment())
    assert module_problems("services.does_not_exist_here")
    assert module_problems("services.in-take")
    assert not module_problems("services.intake")
    assert command_problems(["python", "-m", "services.intake", "serve"], "migrate", "intake")
    broken_ref = {
        "kind": "Deployment",
        "spec": {
            "template": {
                "spec": {
                    "containers": [
                        {
                            "name": "x",
                            "env": [
                                {
                                    "name": "INTAKE_DATABASE_URL",
                                    "valueFrom": {
                                        "secretKeyRef": {
                                            "name": "intake-database",
                                            "key": "nope",
                                        }
                                    },
                                }
                            ],
                        }
                    ]
                }
            }
        },
    }
    assert secret_ref_problems([broken_ref], list(load_documents(SECRET_EXAMPLE)))


def test_checkers_reject_broken_compose_and_dockerfile() -> None:
    broken = {
        "services": {
            "intake": {
                "command": ["python", "-m", "services.intake", "serve"],
                "environment": ["INTAKE_PORT=8001", "SCHEDULING_PORT=8002"],
                "ports": ["8001:8001"],
                "depends_on": ["postgres"],
                "healthcheck": {"test": ["CMD", "true"]},
            },
            "scheduling": {
                "command": ["python", "-m", "services.scheduling", "serve"],
                "ports": ["127.0.0.1:8001:8002"],
                "healthcheck": {"test": ["CMD", "true"]},
            },
        }
    }
    problems = compose_problems(broken)
    assert not compose_schema_problems(broken)
    typo = {"services": {"intake": {"healthcheck": {"test": ["CMD", "true"], "intervall": "5s"}}}}
    assert any("'intervall'" in p for p in compose_schema_problems(typo))
    unknown = {"services": {"intake": {"depends_on": {"kafka": {"condition": "service_up"}}}}}
    assert compose_schema_problems(unknown)
    assert any("unknown service 'postgres'" in p for p in problems)
    assert any("host port 8001" in p for p in problems)
    assert any("SCHEDULING_PORT" in p for p in problems)
    assert dockerfile_user_problems("FROM python:3.11-slim\nUSER app\nUSER root\n")
    assert dockerfile_user_problems("FROM python:3.11-slim\nUSER 0:0\n")
    assert dockerfile_user_problems('FROM python:3.11-slim\nCMD ["python"]\n')
    assert not dockerfile_user_problems("FROM python:3.11-slim\nUSER 10001:10001\n")


def test_checkers_reject_broken_auth_settings() -> None:
    assert auth_env_problems("intake", {})[0].startswith("intake: INTAKE_AUTH_ISSUER")
    assert auth_env_problems("intake", {"INTAKE_AUTH_DISABLED": "true"})
    issuer = {
        "command": [
            *("serve", "--dir", "/d", "--issuer", "http://issuer:8009"),
            *("--audience", "http://localhost:8001/fhir"),
        ],
        "volumes": ["keys:/d"],
        "healthcheck": {"test": ["CMD", "true"]},
    }
    env = {
        "INTAKE_AUTH_ISSUER": "http://issuer:8009",
        "INTAKE_AUTH_AUDIENCE": "http://localhost:8001/fhir",
        "INTAKE_AUTH_CLIENT_ID": "kemdr-intake",
        "INTAKE_AUTH_CLIENT_KEY_FILE": "/d/kemdr-intake.pem",
    }
    good = {"environment": env, "volumes": ["keys:/d:ro"], "depends_on": ["issuer"]}
    ok = compose_auth_problems({"services": {"issuer": issuer, "intake": good}})
    assert not [p for p in ok if p.startswith("intake:")], ok
    unmounted = {**good, "volumes": []}
    problems = compose_auth_problems({"services": {"issuer": issuer, "intake": unmounted}})
    assert any("not inside a mounted volume" in p for p in problems)
    stray = {**good, "environment": {**env, "INTAKE_AUTH_AUDIENCE": "http://intake:8001/fhir"}}
    problems = compose_auth_problems({"services": {"issuer": issuer, "intake": stray}})
    assert any("not one issuer issues for" in p for p in problems)

    deployment = {
        "kind": "Deployment",
        "metadata": {"name": "intake"},
        "spec": {
            "template": {
                "spec": {
                    "containers": [
                        {
                            "name": "intake",
                            "envFrom": [{"configMapRef": {"name": "cm"}}],
                            "volumeMounts": [{"name": "key", "mountPath": "/etc/k"}],
                        }
                    ],
                    "volumes": [{"name": "key", "secret": {"secretName": "nope"}}],
                }
            }
        },
    }
    data = {
        "INTAKE_AUTH_ISSUER": "https://idp.example.org",
        "INTAKE_AUTH_AUDIENCE": "https://h/intake/fhir",
        "INTAKE_AUTH_CLIENT_ID": "kemdr-intake",
        "INTAKE_AUTH_CLIENT_KEY_FILE": "/etc/k/client-key.pem",
        "INTAKE_TRUSTED_PROXIES": "[]",
    }
    problems = k8s_auth_problems(
        deployment, {"cm": {"data": data}}, list(load_documents(SECRET_EXAMPLE)), "https://x"
    )
    assert any("the Ingress serves" in p for p in problems)
    assert any("TRUSTED_PROXIES" in p for p in problems)
    assert any("not readOnly" in p for p in problems)
    assert any("has no file 'client-key.pem'" in p for p in problems)
    assert k8s_auth_problems(deployment, {}, [], "https://x")[0].endswith("refuses to start)")
    broken = {
        "services": {
            "a": {"depends_on": {"b": {"condition": "service_completed_successfully"}}},
            "b": {"restart": "always"},
        }
    }
    assert any("a job that restarts" in p for p in compose_problems(broken))
