"""Turn a resource into the search index rows its declared search parameters need."""

from __future__ import annotations

import unicodedata
from collections.abc import Iterator
from decimal import Decimal, InvalidOperation
from typing import Any

from shared.fhir.catalogue import IMPLICIT_SYSTEMS
from shared.fhir.dates import MAX, MIN, DateFormatError, date_range
from shared.fhir.errors import FHIRError
from shared.fhir.exact_json import out_of_range
from shared.fhir.lexical import is_type_name
from shared.fhir.number_keys import order_key
from shared.fhir.references import parse_reference
from shared.fhir.registry import ResourceDef, SearchParam

_HUMAN_NAME_PARTS = ("family", "given", "prefix", "suffix", "text")
_ADDRESS_PARTS = ("line", "city", "district", "state", "postalCode", "country", "text")


def normalise(text: str) -> str:
    """Fold case and accents, as FHIR's default string matching asks."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()


def values_at(node: Any, path: str) -> Iterator[Any]:
    """Yield every value at a dotted path, flattening repeating elements."""
    head, _, rest = path.partition(".")
    items = node if isinstance(node, list) else [node]
    for item in items:
        if not isinstance(item, dict) or head not in item:
            continue
        value = item[head]
        if rest:
            yield from values_at(value, rest)
        elif isinstance(value, list):
            yield from value
        else:
            yield value


def _tokens(value: Any) -> Iterator[tuple[str | None, str | None]]:
    if isinstance(value, bool):
        yield None, "true" if value else "false"
    elif isinstance(value, str):
        yield None, value
    elif isinstance(value, dict):
        if "coding" in value or ("text" in value and "system" not in value):
            for coding in value.get("coding") or []:
                if isinstance(coding, dict) and ("code" in coding or "system" in coding):
                    yield coding.get("system"), coding.get("code")
        elif "value" in value:  # Identifier or ContactPoint
            yield value.get("system"), str(value["value"])
        elif "code" in value or "system" in value:  # Coding
            yield value.get("system"), value.get("code")


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        parts = _HUMAN_NAME_PARTS if "family" in value or "given" in value else _ADDRESS_PARTS
        for part in parts:
            inner = value.get(part)
            if isinstance(inner, str):
                yield inner
            elif isinstance(inner, list):
                yield from (x for x in inner if isinstance(x, str))


def _dates(value: Any, expression: str) -> Iterator[tuple[Any, Any]]:
    try:
        if isinstance(value, str):
            yield date_range(value)
        elif isinstance(value, dict) and ("start" in value or "end" in value):
            low = date_range(value["start"])[0] if value.get("start") else MIN
            high = date_range(value["end"])[1] if value.get("end") else MAX
            yield low, high
    except DateFormatError as exc:
        raise FHIRError(422, str(exc), code="value", expression=[expression]) from None


def _quantities(value: Any) -> Iterator[tuple[str, str | None, str | None, str | None]]:
    if isinstance(value, dict) and value.get("value") is not None:
        raw = value["value"]
        try:
            number = raw if isinstance(raw, Decimal) else Decimal(str(raw))
        except (InvalidOperation, ValueError):
            return
        if out_of_range(number):  # NaN or a huge exponent given as a string
            return
        yield order_key(number), value.get("system"), value.get("code"), value.get("unit")


def index_rows(definition: ResourceDef, resource: dict[str, Any]) -> dict[str, list[dict]]:
    """Index rows (without resource_pk) per index kind, for every declared parameter."""
    rows: dict[str, list[dict]] = {}
    for param in definition.params:
        out = rows.setdefault(param.kind, [])
        seen: set[tuple] = set()
        for path in param.paths:
            for value in values_at(resource, path):
                for row in _rows_for(definition.type, param, path, value):
                    key = tuple(row.values())
                    if key not in seen:  # one row per distinct value keeps the index small
                        seen.add(key)
                        out.append(row)
    return {kind: found for kind, found in rows.items() if found}


def _rows_for(resource_type: str, param: SearchParam, path: str, value: Any) -> list[dict]:
    base = {"res_type": resource_type, "param": param.name}
    if param.type == "token":
        if isinstance(value, str):
            return [{**base, "system": IMPLICIT_SYSTEMS.get((resource_type, path)), "code": value}]
        # Index columns hold the first 255 characters; longer values still match by prefix.
        return [
            {**base, "system": s[:255] if s else s, "code": c[:255] if c else c}
            for s, c in _tokens(value)
        ]
    if param.type == "uri":
        return [{**base, "system": None, "code": value[:255]}] if isinstance(value, str) else []
    if param.type == "string":
        return [{**base, "norm": normalise(s)[:255], "exact": s[:255]} for s in _strings(value)]
    if param.type == "date":
        expression = f"{resource_type}.{path}"
        return [{**base, "low": lo, "high": hi} for lo, hi in _dates(value, expression)]
    if param.type == "quantity":
        return [
            {**base, "value_key": v, "system": s, "code": c, "unit": u}
            for v, s, c, u in _quantities(value)
        ]
    if param.type == "reference" and isinstance(value, str):
        # A canonical (`url` or `url|version`): matched on its text, it names no stored id.
        return [{**base, "target_type": None, "target_id": None, "url": value[:1024]}]
    if param.type == "reference" and isinstance(value, dict):
        url = value.get("reference")
        if not isinstance(url, str):
            return []
        target_type, target_id = parse_reference(url)
        if target_id is None:
            return []
        if target_type is None and isinstance(value.get("type"), str):
            target_type = value["type"]  # a relative id with Reference.type beside it
        if param.targets and target_type is not None and target_type not in param.targets:
            return []
        if target_type is not None and not is_type_name(target_type):
            target_type = None  # not a resource type name (e.g. a canonical URL in .type)
        if param.targets and target_type is None and len(param.targets) == 1:
            target_type = param.targets[0]
        return [{**base, "target_type": target_type, "target_id": target_id, "url": url[:1024]}]
    return []
