"""Parse and validate FHIR R4 JSON at the boundary with fhir.resources R4B models."""

from __future__ import annotations

import functools
from typing import Any

from fhir.resources.R4B import get_fhir_model_class
from pydantic import BaseModel, ValidationError

from shared.fhir import json_body
from shared.fhir.bindings import check_required_bindings
from shared.fhir.errors import FHIRError, bad_request, issue
from shared.fhir.invariants import check_invariants


def parse_json(body: bytes) -> Any:
    """The JSON of a request body, by the one client-JSON parser (see json_body.loads)."""
    return json_body.loads(body)


@functools.cache
def model_class(resource_type: str) -> type[BaseModel]:
    """The fhir.resources R4B model class for a resource type name."""
    return get_fhir_model_class(resource_type)


def _expression(resource_type: str, loc: tuple[Any, ...]) -> str:
    path = resource_type
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif part not in ("resource_type",):
            # Pydantic names internal extension fields `x__ext`; FHIR JSON calls them `_x`.
            name = str(part)
            if name.endswith("__ext"):
                name = "_" + name[: -len("__ext")]
            path += f".{name}"
    return path


def validate_resource(data: Any, resource_type: str | None = None) -> BaseModel:
    """Validate a JSON object as a FHIR R4 resource; structure, code or invariant errors: 422."""
    if not isinstance(data, dict):
        raise bad_request("The request body must be a JSON object holding a FHIR resource")
    declared = data.get("resourceType")
    if not isinstance(declared, str) or not declared:
        raise FHIRError(
            400, "The resource has no resourceType", code="invalid", expression=["resourceType"]
        )
    if resource_type is not None and declared != resource_type:
        raise FHIRError(
            400,
            f"resourceType '{declared}' does not match the endpoint's type '{resource_type}'",
            code="invalid",
            expression=["resourceType"],
        )
    try:
        cls = model_class(declared)
    except (KeyError, ValueError, AttributeError, ImportError):
        raise FHIRError(
            400,
            f"'{declared}' is not a FHIR R4 resource type",
            code="not-supported",
            expression=["resourceType"],
        ) from None
    try:
        model = cls.model_validate(data)
    except ValidationError as exc:
        issues = [
            issue(
                "error",
                "structure" if err["type"] == "extra_forbidden" else "value",
                f"{_expression(declared, err['loc'])}: {err['msg']}",
                [_expression(declared, err["loc"])],
            )
            for err in exc.errors(include_url=False)
        ]
        raise FHIRError(422, issues[0]["diagnostics"], issues=issues) from None
    except (ValueError, TypeError, RecursionError) as exc:
        raise FHIRError(422, f"{declared}: {exc}", code="value", expression=[declared]) from None
    problems = check_required_bindings(model, declared)
    if problems:
        raise FHIRError(422, problems[0]["diagnostics"], issues=problems)
    check_invariants(data, declared)
    return model
