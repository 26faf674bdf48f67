"""The one parser of a client's JSON body: strict JSON, no duplicate keys, bounded depth."""

from __future__ import annotations

import json
import re
from decimal import Decimal
from typing import Any

from shared.fhir.errors import FHIRError, bad_request
from shared.fhir.exact_json import ExactDecimal, decimal_from_text, out_of_range

MAX_DEPTH = 64
# FHIR strings allow tab, CR and LF but no other control characters (NUL breaks PostgreSQL).
# A lone surrogate (from a "\ud800" escape) cannot be stored or sent back as UTF-8.
_UNSAFE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff]")
_SURROGATE = re.compile(r"[\ud800-\udfff]")
# The strict decoder refuses raw control characters, so they can only come from escapes.
_UNSAFE_ESCAPE = re.compile(r"\\u(?:00[01]|[dD][89a-fA-F])")
# What orjson can write back: a wider integer would make storing the resource fail.
_INT_MIN, _INT_MAX = -(2**63), 2**64 - 1


class _DuplicateKey(ValueError):
    """Raised from inside the decoder; the key is located by a second, marking pass."""


def _refuse_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # Called once per JSON object; dict() in C keeps the common case cheap.
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise _DuplicateKey
    return obj


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


class _Marked(dict):
    """An object that held a duplicate key, kept only while locating it."""

    duplicate: str = ""


def _mark_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) == len(pairs):
        return obj
    seen: set[str] = set()
    marked = _Marked(obj)
    marked.duplicate = next(key for key, _ in pairs if key in seen or seen.add(key))
    return marked


# The same pass keeps every non-integer number's text exactly (1.50 stays 1.50).
_STRICT = json.JSONDecoder(
    object_pairs_hook=_refuse_duplicates,
    parse_float=decimal_from_text,
    parse_constant=_refuse_constant,
)
_MARKING = json.JSONDecoder(
    object_pairs_hook=_mark_duplicates,
    parse_float=decimal_from_text,
    parse_constant=_refuse_constant,
)


def loads(body: bytes) -> Any:
    """Decode a client's JSON; invalid, duplicate keys or too deep is a 400, control chars 422.

    orjson silently keeps the last of duplicate keys, so the standard library's C scanner
    parses instead, with a hook per object that refuses them.
    """
    if not body.strip():
        raise bad_request("The request body is empty; a FHIR JSON resource was expected")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise bad_request("The request body is not valid UTF-8 JSON") from None
    try:
        data = _STRICT.decode(text)
    except _DuplicateKey:
        raise _duplicate_error(text) from None
    except RecursionError:
        raise bad_request(f"The JSON is nested deeper than {MAX_DEPTH} levels", ["$"]) from None
    except ValueError as exc:
        # The decoder's messages name a position, never the document's content.
        raise bad_request(f"The request body is not valid JSON: {exc}") from None
    # The detailed walk builds a path for every node; run it only when something looks wrong.
    if _suspect([data], MAX_DEPTH + 1) or ("\\u" in text and _UNSAFE_ESCAPE.search(text)):
        root = data.get("resourceType") if isinstance(data, dict) else None
        check_json(data, root if isinstance(root, str) and root.isalpha() else "")
    return data


def _duplicate_error(text: str) -> FHIRError:
    try:
        data = _MARKING.decode(text)
    except (ValueError, RecursionError):
        # The first pass stopped at the duplicate, before what else is wrong further on.
        return bad_request("The request body is not valid JSON, and repeats a key")
    root = data.get("resourceType") if isinstance(data, dict) else None
    # A resourceType given twice names no type to root the path in.
    if not (isinstance(root, str) and root.isalpha()) or (
        isinstance(data, _Marked) and data.duplicate == "resourceType"
    ):
        root = ""
    path, key = _find_marked(data, root)
    shown = (
        key
        if len(key) <= 64 and not _UNSAFE.search(key)
        else key[:64].encode("utf-8", "surrogatepass").hex()
    )
    where = f"{path}.{key}" if path else key
    return bad_request(
        f"The JSON object at {path or 'the top level'} has the key '{shown}' more than once",
        [where if not _UNSAFE.search(where) else path or "$"],
    )


def _find_marked(node: Any, path: str) -> tuple[str, str]:
    """The path of the first object (in document order) holding a duplicate, and the key."""
    stack: list[tuple[Any, str]] = [(node, path)]
    while stack:
        current, where = stack.pop()
        if isinstance(current, _Marked):
            return where, current.duplicate
        if isinstance(current, dict):
            children = [(v, f"{where}.{k}" if where else k) for k, v in current.items()]
        elif isinstance(current, list):
            children = [(v, f"{where}[{i}]") for i, v in enumerate(current)]
        else:
            continue
        stack.extend(reversed(children))
    raise AssertionError("no duplicate key found on the second pass")


def _suspect(node: Any, budget: int) -> bool:
    """True when a container is nested too deep or holds a number that cannot be stored."""
    if budget == 0:
        return True
    for value in node.values() if type(node) is dict else node:
        kind = type(value)
        if kind is dict or kind is list:
            if _suspect(value, budget - 1):
                return True
        elif kind is int:
            if not _INT_MIN <= value <= _INT_MAX:
                return True
        elif kind is ExactDecimal and out_of_range(value):
            return True
    return False


def check_json(node: Any, path: str = "", depth: int = 0) -> None:
    """Refuse documents deeper than MAX_DEPTH, unsafe characters and unwritable numbers."""
    if depth > MAX_DEPTH:
        raise bad_request(f"The JSON is nested deeper than {MAX_DEPTH} levels", [path or "$"])
    if isinstance(node, dict):
        for key, value in node.items():
            if _SURROGATE.search(key):
                raise bad_request("A JSON key holds an unpaired surrogate", [path or "$"])
            check_json(value, f"{path}.{key}" if path else key, depth + 1)
    elif isinstance(node, list):
        for index, value in enumerate(node):
            check_json(value, f"{path}[{index}]", depth + 1)
    elif isinstance(node, str):
        if _UNSAFE.search(node):
            raise FHIRError(
                422,
                f"{path or 'The value'} contains a control character or unpaired surrogate",
                code="value",
                expression=[path] if path else None,
            )
    elif isinstance(node, int) and not isinstance(node, bool):
        if not _INT_MIN <= node <= _INT_MAX:
            raise bad_request(
                f"{path or 'A number'} is out of the 64-bit integer range", [path] if path else None
            )
    elif isinstance(node, Decimal) and (problem := out_of_range(node)):
        raise bad_request(f"{path or 'A number'} is {problem}", [path] if path else None)
