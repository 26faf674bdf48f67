"""Parse FHIR search parameters into clauses, result controls and what was applied."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation

from shared.fhir.catalogue import STANDARD_PARAMS
from shared.fhir.dates import DateFormatError, date_range
from shared.fhir.errors import FHIRError, bad_request
from shared.fhir.lexical import is_type_name
from shared.fhir.registry import Registry, ResourceDef, SearchParam

PREFIXES = ("eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap")
_PREFIXED = re.compile(r"^(eq|ne|gt|lt|ge|le|sa|eb|ap)(?=[0-9+\-.])")
MODIFIERS = {
    "token": {"missing", "not"},
    "string": {"missing", "exact", "contains"},
    "date": {"missing"},
    "reference": {"missing"},
    "quantity": {"missing"},
    "uri": {"missing", "below"},
}
# Result parameters we understand; everything else starting with "_" is unknown.
CONTROL_PARAMS = {
    "_count",
    "_offset",
    "_sort",
    "_summary",
    "_total",
    "_include",
    "_revinclude",
    "_elements",
    "_format",
    "_pretty",
}
# Modifiers of _include / _revinclude ("recurse" is the STU3 name of "iterate").
INCLUDE_MODIFIERS = {"iterate", "recurse"}
# The largest _offset accepted; anything beyond is an empty page anyway.
MAX_OFFSET = 10**12
SPECIAL = {
    "_id": SearchParam("_id", "token", (), description="The logical id"),
    "_lastUpdated": SearchParam("_lastUpdated", "date", (), description="When last changed"),
}


@dataclass(frozen=True)
class QueryLimits:
    """How large one search may be, so that no query can tie up a worker or the database."""

    max_sort_keys: int = 5
    max_param_values: int = 100
    max_query_params: int = 50
    # The settings' environment prefix (e.g. "INTAKE_"), to name the limit in errors.
    prefix: str = ""

    def exceeded(self, what: str, limit: int, setting: str, expression: str) -> FHIRError:
        """The 400 telling the client which limit its search went past."""
        return FHIRError(
            400,
            f"{what}; at most {limit} are allowed ({self.prefix}{setting})",
            code="too-costly",
            expression=[expression],
        )


@dataclass(frozen=True)
class Value:
    """One alternative of a parameter (values joined by commas are OR-ed)."""

    prefix: str = "eq"
    text: str = ""
    system: str | None = None
    code: str | None = None
    low: object = None
    high: object = None
    number: Decimal | None = None
    ref_type: str | None = None


@dataclass(frozen=True)
class Clause:
    """One parameter occurrence; clauses are AND-ed."""

    param: SearchParam
    modifier: str | None
    values: tuple[Value, ...]
    missing: bool | None = None


@dataclass(frozen=True)
class Include:
    source_type: str
    param: SearchParam
    target_type: str | None
    iterate: bool = False
    # False when the source type is not stored in this service: nothing can be found.
    stored: bool = True


@dataclass
class SearchQuery:
    """Everything a search asks for, parsed and checked against the resource declaration."""

    resource_type: str
    clauses: list[Clause] = field(default_factory=list)
    count: int = 50
    offset: int = 0
    sort: list[tuple[str, bool]] = field(default_factory=list)  # (param, descending)
    summary_count: bool = False
    total: str = "accurate"
    includes: list[Include] = field(default_factory=list)
    revincludes: list[Include] = field(default_factory=list)
    elements: list[str] = field(default_factory=list)
    # The parameters that were applied, for the Bundle's self link.
    applied: list[tuple[str, str]] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)
    # Set by the search run: whether matches exist beyond this page (None: not known yet).
    more: bool | None = None

    def apply(self, name: str, raw: str) -> None:
        """Record a single-valued result parameter for the self link (the last one wins)."""
        self.applied = [(k, v) for k, v in self.applied if k != name]
        self.applied.append((name, raw))


def _split_commas(raw: str) -> list[str]:
    # A backslash escapes a literal comma inside one value.
    parts, current, escaped = [], "", False
    for char in raw:
        if escaped:
            current += char
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == ",":
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current + ("\\" if escaped else ""))
    return parts


def _prefixed(raw: str) -> tuple[str, str]:
    match = _PREFIXED.match(raw)
    if match:
        return match.group(1), raw[2:]
    return "eq", raw


def _parse_value(param: SearchParam, raw: str, modifier: str | None) -> Value:
    name = param.name
    if param.type == "token":
        if "|" in raw:
            system, code = raw.split("|", 1)
            return Value(text=raw, system=system, code=code or None)
        return Value(text=raw, code=raw)
    if param.type == "string":
        return Value(text=raw)
    if param.type == "uri":
        # Uris match exactly (`:below` by prefix); a "|" is part of the uri, not a system.
        return Value(text=raw, code=raw)
    if param.type == "date":
        prefix, rest = _prefixed(raw)
        try:
            low, high = date_range(rest)
        except DateFormatError as exc:
            raise bad_request(f"Search parameter '{name}': {exc}", [name]) from None
        return Value(prefix=prefix, text=rest, low=low, high=high)
    if param.type == "quantity":
        prefix, rest = _prefixed(raw)
        number, _, unit = rest.partition("|")
        system, _, code = unit.partition("|") if unit else ("", "", "")
        if "|" in code:
            raise bad_request(
                f"Search parameter '{name}': '{raw}' is not [prefix]number|system|code", [name]
            )
        try:
            parsed = Decimal(number)
            # Beyond Decimal's own exponent range the precision arithmetic overflows (a 500);
            # merely huge values are fine and match nothing.
            if not parsed.is_finite() or abs(parsed.adjusted()) > 100_000:
                raise InvalidOperation
        except InvalidOperation:
            raise bad_request(
                f"Search parameter '{name}': '{number}' is not a number", [name]
            ) from None
        return Value(
            prefix=prefix, text=rest, number=parsed, system=system or None, code=code or None
        )
    if param.type == "reference":
        return Value(text=raw, ref_type=modifier)
    raise bad_request(f"Search parameter '{name}' of type {param.type} is not supported", [name])


def parse_search(
    definition: ResourceDef,
    pairs: list[tuple[str, str]],
    *,
    registry: Registry,
    default_count: int,
    max_count: int,
    strict: bool,
    limits: QueryLimits | None = None,
) -> SearchQuery:
    """Parse query pairs; unknown parameters are ignored, or a 400 when `strict`.

    `limits` bounds the number of parameters, of values per parameter and of sort keys.
    """
    limits = limits or QueryLimits()
    if len(pairs) > limits.max_query_params:
        raise limits.exceeded(
            f"The search has {len(pairs)} parameters",
            limits.max_query_params,
            "MAX_QUERY_PARAMS",
            pairs[limits.max_query_params][0],
        )
    query = SearchQuery(definition.type, count=default_count)
    for key, raw in pairs:
        if "\x00" in key or "\x00" in raw:
            raise bad_request(f"Search parameter '{key}' contains a NUL character", [key])
        name, _, modifier = key.partition(":")
        parts = [part for part in _split_commas(raw) if part != ""]
        if len(parts) > limits.max_param_values and name != "_sort":
            raise limits.exceeded(
                f"Search parameter '{key}' has {len(parts)} values",
                limits.max_param_values,
                "MAX_PARAM_VALUES",
                key,
            )
        if not parts:
            # FHIR: a parameter without a value is ignored (an error when strict, so that a
            # conditional create or update never matches everything by accident).
            if strict:
                raise bad_request(f"Search parameter '{key}' has no value", [key])
            query.ignored.append(key)
            continue
        if name in CONTROL_PARAMS:
            _control(query, definition, name, modifier, raw, registry, max_count, limits)
            continue
        # Chained parameters (subject.name, subject:Patient.name) are not supported: unknown.
        param = None if "." in key else SPECIAL.get(name) or definition.param(name)
        if param is None:
            if strict:
                raise bad_request(
                    f"Unknown or unsupported search parameter '{key}' for {definition.type}",
                    [key],
                )
            query.ignored.append(key)
            continue
        mod = modifier or None
        # `subject:Patient=123` names the target type of a reference.
        names_type = param.type == "reference" and mod is not None and mod[:1].isupper()
        if mod is not None and mod not in MODIFIERS[param.type] and not names_type:
            raise bad_request(
                f"Modifier ':{mod}' is not supported on search parameter '{name}'", [key]
            )
        if names_type and (
            not is_type_name(mod or "") or (param.targets and mod not in param.targets)
        ):
            raise bad_request(
                f"Search parameter '{name}' cannot refer to a {mod}"
                + (f"; it refers to {', '.join(param.targets)}" if param.targets else ""),
                [key],
            )
        if mod == "missing":
            if raw not in ("true", "false"):
                raise bad_request(f"'{key}' takes true or false", [key])
            query.clauses.append(Clause(param, mod, (), raw == "true"))
        else:
            values = tuple(_parse_value(param, part, mod) for part in parts)
            query.clauses.append(Clause(param, mod, values))
        query.applied.append((key, raw))
    return query


def _int(name: str, raw: str) -> int:
    try:
        number = int(raw)
    except ValueError:
        raise bad_request(f"'{name}' must be a whole number, not '{raw}'", [name]) from None
    if number < 0:
        raise bad_request(f"'{name}' must not be negative", [name])
    return number


def _control(
    query: SearchQuery,
    definition: ResourceDef,
    name: str,
    modifier: str,
    raw: str,
    registry: Registry,
    max_count: int,
    limits: QueryLimits,
) -> None:
    if modifier and name not in ("_include", "_revinclude"):
        raise bad_request(f"'{name}' takes no modifier", [f"{name}:{modifier}"])
    if name == "_count":
        query.count = min(_int(name, raw), max_count)
        query.apply(name, str(query.count))
    elif name == "_offset":
        query.offset = min(_int(name, raw), MAX_OFFSET)
    elif name == "_sort":
        _sort(query, definition, raw, limits)
    elif name == "_summary":
        if raw == "count":
            query.summary_count = True
        elif raw != "false":
            raise FHIRError(
                400,
                f"_summary={raw} is not supported (use count or false)",
                code="not-supported",
                expression=[name],
            )
        query.apply(name, raw)
    elif name == "_total":
        if raw not in ("none", "estimate", "accurate"):
            raise bad_request("_total must be none, estimate or accurate", [name])
        query.total = raw
        query.apply(name, raw)
    elif name in ("_include", "_revinclude"):
        key = f"{name}:{modifier}" if modifier else name
        if modifier and modifier not in INCLUDE_MODIFIERS:
            raise bad_request(f"Modifier ':{modifier}' is not supported on {name}", [key])
        include = _parse_include(definition, name, raw, registry, iterate=bool(modifier))
        (query.includes if name == "_include" else query.revincludes).append(include)
        query.applied.append((key, raw))
    elif name == "_elements":
        query.elements = [e.strip() for e in raw.split(",") if e.strip()]
        query.apply(name, raw)


def _sort(query: SearchQuery, definition: ResourceDef, raw: str, limits: QueryLimits) -> None:
    # Keys add up over repeated `_sort` parameters: each key costs a subquery per match.
    items = [item for item in raw.split(",") if item]
    if len(query.sort) + len(items) > limits.max_sort_keys:
        raise limits.exceeded(
            f"The search sorts by {len(query.sort) + len(items)} keys",
            limits.max_sort_keys,
            "MAX_SORT_KEYS",
            "_sort",
        )
    for item in items:
        descending = item.startswith("-")
        key = item[1:] if descending else item
        param = SPECIAL.get(key) or definition.param(key)
        if param is None:
            raise bad_request(f"Cannot sort {definition.type} by unknown '{key}'", ["_sort"])
        if any(seen == key for seen, _ in query.sort):
            raise bad_request(f"_sort names '{key}' more than once", ["_sort"])
        query.sort.append((key, descending))
    text = ",".join(f"-{key}" if desc else key for key, desc in query.sort)
    query.apply("_sort", text)


def _parse_include(
    definition: ResourceDef, name: str, raw: str, registry: Registry, *, iterate: bool
) -> Include:
    parts = raw.split(":")
    if len(parts) not in (2, 3) or not all(parts):
        raise bad_request(f"{name} must look like Type:parameter[:TargetType]", [name])
    source_type, param_name = parts[0], parts[1]
    target = parts[2] if len(parts) == 3 else None
    if target is not None and not is_type_name(target):
        raise bad_request(f"{name}={raw}: '{target}' is not a resource type", [name])
    if name == "_include" and source_type != definition.type and not iterate:
        raise bad_request(f"{name}={raw}: the source type must be {definition.type}", [name])
    source = registry.get(source_type)
    if source is not None:
        param = source.param(param_name)
    else:
        # A type stored in another service: valid, but nothing of it can be found here.
        known = STANDARD_PARAMS.get(source_type, ())
        param = next((p for p in known if p.name == param_name), None)
        if not known:
            raise bad_request(f"{name}={raw}: {source_type} is not a known type here", [name])
    if param is None or param.type != "reference":
        raise bad_request(
            f"{name}={raw}: {source_type} has no reference parameter '{param_name}'", [name]
        )
    if target is not None and param.targets and target not in param.targets:
        raise bad_request(f"{name}={raw}: '{param_name}' cannot refer to a {target}", [name])
    return Include(source_type, param, target, iterate=iterate, stored=source is not None)
