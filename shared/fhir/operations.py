"""FHIR operations ($name): their declarations, typed inputs and OperationDefinitions."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any, Literal

from shared.fhir.dates import DateFormatError, date_range
from shared.fhir.errors import bad_request
from shared.fhir.lexical import ID_PATTERN

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from shared.fhir.interactions import Interactions
    from shared.settings import ServiceSettings

Level = Literal["system", "type", "instance"]

_CODE = re.compile(r"[^\s]+( [^\s]+)*")
# FHIR R4 `time`: a time of day, seconds required, no time zone.
_TIME = re.compile(r"([01][0-9]|2[0-3]):[0-5][0-9]:([0-5][0-9]|60)(\.[0-9]+)?")


def _integer(text: str) -> int:
    if not re.fullmatch(r"-?(0|[1-9][0-9]{0,9})", text):
        raise ValueError("an integer")
    return int(text)


def _boolean(text: str) -> bool:
    if text not in ("true", "false"):
        raise ValueError("true or false")
    return text == "true"


def _decimal(text: str) -> Decimal:
    try:
        if not re.fullmatch(r"-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?", text):
            raise InvalidOperation
        return Decimal(text)
    except InvalidOperation:
        raise ValueError("a decimal") from None


def _date(text: str) -> str:
    try:
        date_range(text)
    except DateFormatError:
        raise ValueError("a FHIR date or dateTime") from None
    return text


def _time(text: str) -> str:
    if not _TIME.fullmatch(text):
        raise ValueError("a time of day as hh:mm:ss")
    return text


def _code(text: str) -> str:
    if not _CODE.fullmatch(text):
        raise ValueError("a code")
    return text


def _id(text: str) -> str:
    if not ID_PATTERN.fullmatch(text):
        raise ValueError("an id")
    return text


# FHIR primitive types an operation parameter may have, with the lexical check of each.
_PRIMITIVE: dict[str, Callable[[str], Any]] = {
    "string": str,
    "uri": str,
    "url": str,
    "canonical": str,
    "markdown": str,
    "integer": _integer,
    "positiveInt": _integer,
    "unsignedInt": _integer,
    "boolean": _boolean,
    "decimal": _decimal,
    "date": _date,
    "dateTime": _date,
    "instant": _date,
    "time": _time,
    "code": _code,
    "id": _id,
}
# The JSON property a Parameters entry carries each primitive in.
_VALUE_KEY = {name: f"value{name[0].upper()}{name[1:]}" for name in _PRIMITIVE}


@dataclass(frozen=True)
class OperationParam:
    """One input or output parameter of an operation, as an OperationDefinition states it."""

    name: str
    type: str
    min: int = 0
    max: str = "1"
    documentation: str = ""


@dataclass
class OperationCall:
    """What an operation handler gets: where it was invoked, its checked inputs, the session."""

    session: Session
    interactions: Interactions
    base: str
    res_type: str | None
    res_id: str | None
    # Input name -> its values (typed primitives, or resources as dicts), in the order sent.
    inputs: dict[str, list[Any]]
    # The invoking URL without the query, for paging links.
    url: str
    # What the operation's `prepare` step returned (None without one).
    prepared: Any = None

    def one(self, name: str, default: Any = None) -> Any:
        """The single value of an input, or `default`."""
        values = self.inputs.get(name)
        return values[0] if values else default


@dataclass(frozen=True)
class OperationResult:
    """A handler's answer: a resource to return and its status."""

    body: dict[str, Any]
    status: int = 200


Handler = Callable[[OperationCall], OperationResult]
# Draws a handler's answer (e.g. a Parameters resource) in another media type, e.g. a PNG chart.
Renderer = Callable[[dict[str, Any]], bytes]
# Gets the checked inputs and the service's settings; runs before the handler's session.
Prepare = Callable[[dict[str, list[Any]], "ServiceSettings"], Awaitable[Any]]


@dataclass(frozen=True)
class Operation:
    """A FHIR operation a service serves; declared on a ResourceDef or the Registry."""

    name: str  # without the "$"
    levels: frozenset[str]
    handler: Handler
    description: str
    methods: frozenset[str] = frozenset({"GET", "POST"})
    # Operations that write run in a unit of work, so their changes produce events.
    affects_state: bool = False
    # The SMART scope a caller will need (the security issue enforces it).
    scope: str = ""
    inputs: tuple[OperationParam, ...] = ()
    outputs: tuple[OperationParam, ...] = ()
    # Network I/O the handler needs (a fetch from another server), awaited before the
    # handler's session opens: no transaction or database lock is held while it waits. Its
    # result reaches the handler as `call.prepared`; a FHIRError it raises is the answer.
    prepare: Prepare | None = None
    # Media type -> renderer: a client whose Accept (or `_format`) asks for one of these types
    # gets the handler's answer drawn by it (run in a worker thread) instead of the JSON.
    renderers: Mapping[str, Renderer] = field(default_factory=dict, hash=False, compare=False)

    def __post_init__(self) -> None:
        if "GET" in self.methods and self.affects_state:
            raise ValueError(f"${self.name} changes state, so it cannot be invoked by GET")

    def definition_id(self, res_type: str | None) -> str:
        """The id of its OperationDefinition, e.g. `Patient-everything`."""
        return f"{res_type}-{self.name}" if res_type else self.name

    # ---- inputs ------------------------------------------------------------------------
    def parse_query(self, pairs: list[tuple[str, str]]) -> dict[str, list[Any]]:
        """Inputs from a GET query string: every parameter must be declared and primitive."""
        raw: dict[str, list[Any]] = {}
        for name, value in pairs:
            raw.setdefault(name, []).append(value)
        return self._checked(raw, from_query=True)

    def parse_parameters(self, body: Any) -> dict[str, list[Any]]:
        """Inputs from a POSTed Parameters resource (an empty body means no inputs)."""
        if body is None:
            return self._checked({}, from_query=False)
        if not isinstance(body, dict) or body.get("resourceType") != "Parameters":
            raise bad_request(f"${self.name} takes a Parameters resource", ["Parameters"])
        raw: dict[str, list[Any]] = {}
        for index, entry in enumerate(body.get("parameter") or []):
            where = f"Parameters.parameter[{index}]"
            if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
                raise bad_request("Every parameter needs a name", [where])
            declared = self._declared(entry["name"], where)
            if "resource" in entry:
                value: Any = entry["resource"]
            else:
                key = _VALUE_KEY.get(declared.type, f"value{declared.type}")
                if key not in entry:
                    raise bad_request(
                        f"Parameter '{declared.name}' must be given as {key}", [f"{where}.{key}"]
                    )
                value = entry[key]
                # JSON numbers and booleans arrive typed: check them through their text.
                value = (
                    ("true" if value else "false")
                    if isinstance(value, bool)
                    else (str(value) if isinstance(value, (int, float, Decimal)) else value)
                )
            raw.setdefault(entry["name"], []).append(value)
        return self._checked(raw, from_query=False)

    def _declared(self, name: str, where: str) -> OperationParam:
        for param in self.inputs:
            if param.name == name:
                return param
        known = ", ".join(p.name for p in self.inputs) or "none"
        raise bad_request(f"${self.name} has no parameter '{name}' (it takes: {known})", [where])

    def _checked(self, raw: dict[str, list[Any]], *, from_query: bool) -> dict[str, list[Any]]:
        checked: dict[str, list[Any]] = {}
        for name in raw:
            self._declared(name, name)
        for param in self.inputs:
            values = raw.get(param.name, [])
            if len(values) < param.min:
                raise bad_request(f"${self.name} needs the parameter '{param.name}'", [param.name])
            if param.max != "*" and len(values) > int(param.max):
                raise bad_request(
                    f"'{param.name}' may be given at most {param.max} time(s)", [param.name]
                )
            parse = _PRIMITIVE.get(param.type)
            if parse is None:
                if from_query and values:
                    raise bad_request(
                        f"'{param.name}' is a {param.type}: POST it in a Parameters resource",
                        [param.name],
                    )
                checked[param.name] = values
                continue
            typed = []
            for value in values:
                try:
                    if not isinstance(value, str):
                        raise ValueError(param.type)
                    typed.append(parse(value))
                except ValueError as exc:
                    raise bad_request(
                        f"'{param.name}' must be {exc} ({param.type})", [param.name]
                    ) from None
            checked[param.name] = typed
        return checked

    # ---- the OperationDefinition -------------------------------------------------------
    def operation_definition(self, res_type: str | None, canonical_base: str) -> dict[str, Any]:
        """This operation as the OperationDefinition resource the service serves."""
        op_id = self.definition_id(res_type)

        def parameters(params: tuple[OperationParam, ...], use: str) -> list[dict[str, Any]]:
            return [
                {
                    "name": p.name,
                    "use": use,
                    "min": p.min,
                    "max": p.max,
                    "type": p.type,
                    **({"documentation": p.documentation} if p.documentation else {}),
                }
                for p in params
            ]

        definition: dict[str, Any] = {
            "resourceType": "OperationDefinition",
            "id": op_id,
            "url": f"{canonical_base}/OperationDefinition/{op_id}",
            "name": re.sub(r"[^A-Za-z0-9]", "", op_id.title()),
            "status": "active",
            "kind": "operation",
            "description": self.description,
            "affectsState": self.affects_state,
            "code": self.name,
            "system": "system" in self.levels,
            "type": "type" in self.levels,
            "instance": "instance" in self.levels,
            "parameter": parameters(self.inputs, "in") + parameters(self.outputs, "out"),
        }
        if res_type:
            definition["resource"] = [res_type]
        if self.scope:
            definition["extension"] = [
                {
                    "url": f"{canonical_base}/StructureDefinition/required-scope",
                    "valueString": self.scope,
                }
            ]
        return definition
