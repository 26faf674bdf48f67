"""The CapabilityStatement, generated from what the service has registered."""

from __future__ import annotations

from typing import Any

from shared.fhir.dates import format_instant, utcnow
from shared.fhir.operations import Operation
from shared.fhir.registry import Registry, ResourceDef
from shared.fhir.search import SPECIAL

_PARAM_DOCS = {
    "_count": "Page size (default and maximum in the service settings)",
    "_sort": "Sort by a parameter; prefix with - for descending",
}


def _search_params(definition: ResourceDef) -> list[dict[str, Any]]:
    params = [*SPECIAL.values(), *definition.params]
    return [
        {
            "name": p.name,
            "type": p.type,
            "documentation": p.description or p.name,
        }
        for p in params
    ]


def _operations(
    operations: list[Operation], res_type: str | None, canonical_base: str
) -> list[dict[str, Any]]:
    return [
        {
            "name": op.name,
            "definition": f"{canonical_base}/OperationDefinition/{op.definition_id(res_type)}",
            "documentation": op.description,
        }
        for op in operations
    ]


def _resource(registry: Registry, definition: ResourceDef, canonical_base: str) -> dict[str, Any]:
    # Writable through the API: owned here, and not a record the service keeps itself.
    owned = definition.owner == registry.service and definition.api_writable
    interactions = ["read", "vread", "search-type", "history-instance", "history-type"]
    if owned:
        interactions += ["create", "update", "patch", "delete"]
    entry: dict[str, Any] = {
        "type": definition.type,
        "interaction": [{"code": code} for code in interactions],
        "versioning": "versioned-update",
        "readHistory": True,
        "updateCreate": owned,
        "conditionalCreate": owned,
        "conditionalRead": "not-supported",
        "conditionalUpdate": owned,
        "conditionalDelete": "single" if owned else "not-supported",
        "searchInclude": [
            f"{definition.type}:{p.name}" for p in definition.params if p.type == "reference"
        ],
        "searchRevInclude": [
            f"{other.type}:{p.name}"
            for other in registry.resources.values()
            for p in other.params
            if p.type == "reference" and (not p.targets or definition.type in p.targets)
        ],
        "searchParam": _search_params(definition),
    }
    if definition.operations:
        entry["operation"] = _operations(
            list(definition.operations), definition.type, canonical_base
        )
    if not definition.api_writable:
        entry["documentation"] = "Written by the service itself; read-only through the API."
    elif not owned:
        entry["documentation"] = (
            f"Read-only replica; the '{definition.owner}' service owns and writes it."
        )
    return entry


def capability_statement(
    registry: Registry, base: str, version: str, canonical_base: str
) -> dict[str, Any]:
    """A CapabilityStatement listing exactly the interactions, parameters and operations."""
    statement: dict[str, Any] = {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": format_instant(utcnow())[:10],
        "kind": "instance",
        "software": {"name": f"kemdr-{registry.service}", "version": version},
        "implementation": {"description": f"The {registry.service} service", "url": base},
        "fhirVersion": "4.0.1",
        "format": ["application/fhir+json", "json"],
        "patchFormat": ["application/json-patch+json"],
        "rest": [
            {
                "mode": "server",
                "documentation": (
                    "_include and _revinclude return only resources stored in this service "
                    "(owned or replicated). Unknown search parameters are ignored unless "
                    "Prefer: handling=strict is sent."
                ),
                "resource": [
                    _resource(registry, d, canonical_base) for d in registry.resources.values()
                ],
                "interaction": [
                    {"code": "transaction"},
                    {"code": "batch"},
                    {"code": "history-system"},
                ],
                "searchParam": [
                    {
                        "name": name,
                        "type": "number" if name == "_count" else "string",
                        "documentation": doc,
                    }
                    for name, doc in _PARAM_DOCS.items()
                ],
            }
        ],
    }
    if registry.operations:
        statement["rest"][0]["operation"] = _operations(registry.operations, None, canonical_base)
    return statement
