"""Apply a JSON Patch (RFC 6902) to a resource; errors name the operation, never values.

jsonpatch's and jsonpointer's messages quote values and sometimes the whole document, which
is patient data in an error body (and in any log of it), so they are never passed on.
"""

from __future__ import annotations

from typing import Any

import jsonpatch
import jsonpointer

from shared.fhir import exact_json
from shared.fhir.errors import FHIRError, bad_request

MAX_PATCH_OPERATIONS = 1000
_NEEDS = {
    "add": ("path", "value"),
    "remove": ("path",),
    "replace": ("path", "value"),
    "move": ("from", "path"),
    "copy": ("from", "path"),
    "test": ("path", "value"),
}
_SHOWN_PATH = 200


def check_operations(operations: Any) -> list[dict[str, Any]]:
    """The operations of a JSON Patch document; a malformed one is a 400 naming it."""
    if not isinstance(operations, list):
        raise bad_request("A JSON Patch body must be an array of operations")
    if len(operations) > MAX_PATCH_OPERATIONS:
        raise bad_request(f"A JSON Patch may hold at most {MAX_PATCH_OPERATIONS} operations")
    for index, operation in enumerate(operations):
        if not isinstance(operation, dict):
            raise bad_request(f"JSON Patch operation {index} is not an object", [f"[{index}]"])
        op = operation.get("op")
        if op not in _NEEDS:
            raise bad_request(
                f"JSON Patch operation {index} has no known op (one of {', '.join(_NEEDS)})",
                [f"[{index}].op"],
            )
        for member in _NEEDS[op]:
            if member not in operation:
                raise bad_request(
                    f"JSON Patch operation {index} ({op}) has no '{member}'",
                    [f"[{index}].{member}"],
                )
            if member != "value" and not isinstance(operation[member], str):
                raise bad_request(
                    f"JSON Patch operation {index} ({op}): '{member}' must be a JSON Pointer",
                    [f"[{index}].{member}"],
                )
    return operations


def apply_patch(
    document: dict[str, Any], operations: Any, resource_type: str, max_bytes: int
) -> Any:
    """The patched document; an operation that cannot apply is a 422 naming its op and path."""
    patched: Any = document
    for index, operation in enumerate(check_operations(operations)):
        try:
            # One at a time, so a patch that copies a document into itself stops early.
            patched = jsonpatch.JsonPatch([operation]).apply(patched)
        except jsonpatch.JsonPatchTestFailed:
            raise _failed(index, operation, resource_type, "the test does not hold") from None
        except (
            jsonpatch.JsonPatchException,
            jsonpointer.JsonPointerException,
            TypeError,
            KeyError,
            AttributeError,
            ValueError,
        ):
            raise _failed(
                index, operation, resource_type, "its path does not exist in the resource"
            ) from None
        if len(exact_json.dumps(patched)) > max_bytes:
            raise FHIRError(
                413,
                f"The patched resource exceeds {max_bytes} bytes at operation {index}",
                code="too-costly",
            )
    return patched


def _failed(index: int, operation: dict[str, Any], resource_type: str, why: str) -> FHIRError:
    op = operation["op"]
    shown = " ".join(
        f"{member} '{_short(operation[member])}'"
        for member in ("from", "path")
        if member in operation
    )
    return FHIRError(
        422,
        f"JSON Patch operation {index} ({op} {shown}) cannot be applied: {why}",
        code="processing",
        expression=[pointer_to_fhirpath(operation["path"], resource_type)],
    )


def _short(pointer: str) -> str:
    return pointer if len(pointer) <= _SHOWN_PATH else pointer[:_SHOWN_PATH] + "..."


def pointer_to_fhirpath(pointer: str, resource_type: str) -> str:
    """A JSON Pointer into a resource as FHIRPath: /name/0/family is Patient.name[0].family."""
    path = resource_type
    for token in pointer[:_SHOWN_PATH].split("/")[1:]:
        token = token.replace("~1", "/").replace("~0", "~")
        if token.isdigit():
            path += f"[{token}]"
        elif token != "-":
            path += f".{token.removeprefix('_')}"
    return path
