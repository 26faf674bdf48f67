"""The core invariants of every FHIR R4 resource that fhir.resources does not check.

ext-1 (an extension has a value or nested extensions, not both), dom-2 (no nested contained),
dom-3 (a contained resource is referenced), dom-4/dom-5 (a contained resource has no version,
lastUpdated or security labels), ref-1 (a local reference resolves to a contained resource), a
contained resource has an id, and unknown modifier extensions, which a server must refuse.
Hand-written rather than FHIRPath: one walk over the JSON, only when the resource has any of
extensions, contained resources or local references.
"""

from __future__ import annotations

from typing import Any

import orjson

from shared.fhir import exact_json
from shared.fhir.errors import FHIRError, issue

# Modifier extensions this server understands; any other makes the resource refused (FHIR
# R4 extensibility.html#modifierExtension). Later features add their URLs here.
KNOWN_MODIFIER_EXTENSIONS: set[str] = set()
MAX_ISSUES = 20
# Substrings of the serialised resource without which no invariant here can be broken.
_TRIGGERS = (b'"extension"', b'"modifierExtension"', b'"contained"', b'"#')

_TEXT = {
    "ext-1": "Must have either extensions or value[x], not both",
    "dom-2": "If the resource is contained in another resource, it SHALL NOT contain nested "
    "Resources",
    "dom-3": "If the resource is contained in another resource, it SHALL be referred to from "
    "elsewhere in the resource or SHALL refer to the containing resource",
    "dom-4": "If a resource is contained in another resource, it SHALL NOT have a "
    "meta.versionId or a meta.lastUpdated",
    "dom-5": "If a resource is contained in another resource, it SHALL NOT have a security label",
    "ref-1": "SHALL have a contained resource if a local reference is provided",
}


def check_invariants(resource: dict[str, Any], resource_type: str) -> None:
    """Raise a 422 (code invariant) naming each broken core invariant and where it is."""
    try:
        if not any(trigger in exact_json.dumps(resource) for trigger in _TRIGGERS):
            return
        problems = _Walk(resource, resource_type).problems()
    except (RecursionError, orjson.JSONEncodeError):
        # Only a PATCH result can get this deep: parsed bodies are limited to MAX_DEPTH.
        raise FHIRError(
            422,
            f"{resource_type} is nested too deep",
            code="too-costly",
            expression=[resource_type],
        ) from None
    if problems:
        raise FHIRError(422, problems[0]["diagnostics"], issues=problems[:MAX_ISSUES])


class _Walk:
    """One pass over a resource collecting what the invariants need, then the verdicts."""

    def __init__(self, resource: dict[str, Any], resource_type: str) -> None:
        self.root = resource_type
        self.issues: list[dict[str, Any]] = []
        self.local_refs: list[tuple[str, str, bool]] = []  # (path, "#x", inside contained)
        self.hash_values: set[str] = set()  # every "#..." string: references, canonicals, uris
        contained = resource.get("contained")
        self.contained = contained if isinstance(contained, list) else []
        self._visit(resource, resource_type, inside_contained=False)

    def problems(self) -> list[dict[str, Any]]:
        ids: set[str] = set()
        for index, item in enumerate(self.contained):
            self._check_contained(index, item, ids)
        for path, value, inside_contained in self.local_refs:
            # "#" alone points from a contained resource back to its container.
            if value == "#" and inside_contained:
                continue
            if value[1:] not in ids:
                self._fail(
                    "ref-1", path, f"the local reference '{value[:64]}' names no contained resource"
                )
        return self.issues

    def _check_contained(self, index: int, item: Any, ids: set[str]) -> None:
        path = f"{self.root}.contained[{index}]"
        if not isinstance(item, dict):
            return
        res_id = item.get("id")
        if not isinstance(res_id, str) or not res_id:
            self.issues.append(
                issue(
                    "error",
                    "required",
                    f"{path}: a contained resource must have an id to be referenced by",
                    [f"{path}.id"],
                )
            )
        elif res_id in ids:
            self.issues.append(
                issue(
                    "error",
                    "invariant",
                    f"{path}: the id '{res_id[:64]}' is given to another contained resource too",
                    [f"{path}.id"],
                )
            )
        else:
            ids.add(res_id)
            refers_to_container = any(
                inside and value == "#" and where.startswith(path + ".")
                for where, value, inside in self.local_refs
            )
            if f"#{res_id}" not in self.hash_values and not refers_to_container:
                self._fail(
                    "dom-3", path, f"the contained resource '{res_id[:64]}' is not referenced"
                )
        if "contained" in item:
            self._fail("dom-2", f"{path}.contained", "a contained resource contains resources")
        meta = item.get("meta")
        if isinstance(meta, dict):
            for key in ("versionId", "lastUpdated"):
                if key in meta:
                    self._fail(
                        "dom-4", f"{path}.meta.{key}", f"a contained resource has meta.{key}"
                    )
            if meta.get("security"):
                self._fail(
                    "dom-5", f"{path}.meta.security", "a contained resource has a security label"
                )

    def _fail(self, key: str, path: str, what: str) -> None:
        self.issues.append(
            issue("error", "invariant", f"{key}: {path}: {what} ({_TEXT[key]})", [path])
        )

    def _visit(self, node: Any, path: str, *, inside_contained: bool) -> None:
        if isinstance(node, list):
            for index, item in enumerate(node):
                self._visit(item, f"{path}[{index}]", inside_contained=inside_contained)
            return
        if isinstance(node, str):
            if node.startswith("#"):
                self.hash_values.add(node)
            return
        if not isinstance(node, dict):
            return
        for key, value in node.items():
            # FHIR JSON keeps a primitive's extensions under "_name"; FHIRPath calls it "name".
            where = f"{path}.{key[1:] if key.startswith('_') else key}"
            if key in ("extension", "modifierExtension") and isinstance(value, list):
                for index, extension in enumerate(value):
                    self._check_extension(key, extension, f"{where}[{index}]")
            elif key == "reference" and isinstance(value, str) and value.startswith("#"):
                self.local_refs.append((where, value, inside_contained))
            inside = inside_contained or (key == "contained" and path == self.root)
            self._visit(value, where, inside_contained=inside)

    def _check_extension(self, key: str, extension: Any, path: str) -> None:
        if not isinstance(extension, dict):
            return
        has_value = any(
            name.lstrip("_").startswith("value") and name.lstrip("_")[5:6].isupper()
            for name in extension
        )
        if has_value == bool(extension.get("extension")):
            both = (
                "both a value and nested extensions"
                if has_value
                else "neither a value nor extensions"
            )
            self._fail("ext-1", path, f"the extension has {both}")
        url = extension.get("url")
        if key == "modifierExtension" and url not in KNOWN_MODIFIER_EXTENSIONS:
            shown = url[:200] if isinstance(url, str) else "(none)"
            self.issues.append(
                issue(
                    "error",
                    "not-supported",
                    f"{path}: the modifier extension '{shown}' is not known to this server, "
                    "which must refuse what it cannot understand",
                    [path],
                )
            )
