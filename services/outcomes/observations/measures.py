"""The measures outcomes knows: a versioned file in the repository, loaded and checked at start.

Codes, value types, UCUM units, ranges and bands are configuration (measures/measures.json, each
with its source), never written into code; a malformed file stops the service from starting with
a message naming the part at fault (see parse_measures).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Any, Literal

MEASURES_FILE = Path(__file__).resolve().parent.parent / "measures" / "measures.json"
UCUM = "http://unitsofmeasure.org"
# Scores may also come as a Quantity in this UCUM unit (the LOINC and FHIR IG convention).
SCORE_UNIT = "{score}"
# In the file, the system of codes the programme defines itself (its published CodeSystem).
LOCAL = "local"
_ID_CHARS = set("abcdefghijklmnopqrstuvwxyz0123456789-")

ValueType = Literal["score", "quantity", "none"]


class MeasureFileError(ValueError):
    """The measures file is malformed; the message names the part at fault."""


@dataclass(frozen=True)
class Bounds:
    """An allowed range, both ends included unless `min_exclusive`."""

    min: Decimal
    max: Decimal
    min_exclusive: bool = False

    def holds(self, value: Decimal) -> bool:
        above = value > self.min if self.min_exclusive else value >= self.min
        return above and value <= self.max

    def text(self) -> str:
        low = f"above {_plain(self.min)}" if self.min_exclusive else f"from {_plain(self.min)}"
        return f"{low} to {_plain(self.max)}"


@dataclass(frozen=True)
class Band:
    code: str
    display: str
    min: int
    max: int


@dataclass(frozen=True)
class Measure:
    """One measure: the codes that name it, and what its value must be."""

    key: str
    display: str
    codes: tuple[tuple[str, str], ...]  # (system, code); LOCAL for the programme's own system
    value_type: ValueType
    score: Bounds | None  # for scores
    units: dict[str, Bounds]  # UCUM code -> bounds, for quantities
    components: tuple[str, ...]  # keys of the measures a panel needs as components
    bands: tuple[Band, ...]
    definition: str | None
    # Everything else the file says of the measure (remission, cut-points, sources): read by
    # the outcome computations, not by the write rules.
    extra: dict[str, Any]

    @property
    def code(self) -> str:
        return self.codes[0][1]


@dataclass(frozen=True)
class MeasureTable:
    version: str
    local: dict[str, str]  # the local CodeSystem's id, name, title, description
    measures: dict[str, Measure]

    def local_measures(self) -> list[Measure]:
        return [m for m in self.measures.values() if any(s == LOCAL for s, _ in m.codes)]

    def by_coding(self, local_system: str) -> dict[tuple[str, str], Measure]:
        """Each (system, code) to its measure, local codes under `local_system` (a url)."""
        return {
            (local_system if system == LOCAL else system, code): measure
            for measure in self.measures.values()
            for system, code in measure.codes
        }


def _plain(number: Decimal) -> str:
    return format(number.normalize(), "f") if number == number.to_integral() else str(number)


def _text(data: Any, where: str) -> str:
    if not isinstance(data, str) or not data.strip():
        raise MeasureFileError(f"{where} must be a non-empty string")
    return data


def _number(data: Any, where: str) -> Decimal:
    if isinstance(data, bool) or not isinstance(data, int | float):
        raise MeasureFileError(f"{where} must be a number")
    return Decimal(str(data))


def _bounds(data: Any, where: str, *, integers: bool = False) -> Bounds:
    if not isinstance(data, dict):
        raise MeasureFileError(f"{where} must be an object with min and max")
    low, high = _number(data.get("min"), f"{where}.min"), _number(data.get("max"), f"{where}.max")
    if integers and (low != low.to_integral() or high != high.to_integral()):
        raise MeasureFileError(f"{where}: a score's min and max must be integers")
    if low > high:
        raise MeasureFileError(f"{where}: min {_plain(low)} is above max {_plain(high)}")
    exclusive = data.get("minExclusive", False)
    if not isinstance(exclusive, bool):
        raise MeasureFileError(f"{where}.minExclusive must be true or false")
    return Bounds(low, high, exclusive)


def _codes(data: Any, where: str) -> tuple[tuple[str, str], ...]:
    if not isinstance(data, list) or not data:
        raise MeasureFileError(f"{where} must list at least one code")
    codes = []
    for i, item in enumerate(data):
        if not isinstance(item, dict):
            raise MeasureFileError(f"{where}[{i}] must be an object with system and code")
        codes.append(
            (
                _text(item.get("system"), f"{where}[{i}].system"),
                _text(item.get("code"), f"{where}[{i}].code"),
            )
        )
    return tuple(codes)


def _bands(data: Any, where: str, score: Bounds | None) -> tuple[Band, ...]:
    if data is None:
        return ()
    if score is None or not isinstance(data, list) or not data:
        raise MeasureFileError(f"{where}: bands are a non-empty list, for scores only")
    bands = []
    for i, item in enumerate(data):
        at = f"{where}[{i}]"
        if not isinstance(item, dict):
            raise MeasureFileError(f"{at} must be an object")
        bounds = _bounds(item, at, integers=True)
        bands.append(
            Band(
                _text(item.get("code"), f"{at}.code"),
                _text(item.get("display"), f"{at}.display"),
                int(bounds.min),
                int(bounds.max),
            )
        )
    # Bands cover the score's range without a gap or an overlap, in order.
    expected = int(score.min)
    for i, band in enumerate(bands):
        if band.min != expected:
            raise MeasureFileError(f"{where}[{i}] starts at {band.min}, expected {expected}")
        expected = band.max + 1
    if expected - 1 != int(score.max):
        raise MeasureFileError(
            f"{where}: the last band ends at {expected - 1}, not {_plain(score.max)}"
        )
    return tuple(bands)


_KNOWN = {"display", "codes", "value", "components", "bands", "definition"}


def _measure(key: str, data: Any) -> Measure:
    where = f"measures.{key}"
    if not isinstance(data, dict):
        raise MeasureFileError(f"{where} must be an object")
    if not key or not set(key) <= _ID_CHARS:
        raise MeasureFileError(f"{where}: keys are lower-case letters, digits and '-'")
    codes = _codes(data.get("codes"), f"{where}.codes")
    value = data.get("value")
    if not isinstance(value, dict) or value.get("type") not in ("score", "quantity", "none"):
        raise MeasureFileError(f"{where}.value.type must be score, quantity or none")
    kind: ValueType = value["type"]
    score = _bounds(value, f"{where}.value", integers=True) if kind == "score" else None
    units: dict[str, Bounds] = {}
    if kind == "quantity":
        given = value.get("units")
        if not isinstance(given, dict) or not given:
            raise MeasureFileError(f"{where}.value.units must map UCUM codes to their bounds")
        units = {
            _text(unit, f"{where}.value.units"): _bounds(bounds, f"{where}.value.units.{unit}")
            for unit, bounds in given.items()
        }
    components = data.get("components", [])
    if not isinstance(components, list) or not all(isinstance(c, str) for c in components):
        raise MeasureFileError(f"{where}.components must list measure keys")
    if kind == "none" and not components:
        raise MeasureFileError(f"{where}: a measure without a value needs components")
    definition = data.get("definition")
    local = any(system == LOCAL for system, _ in codes)
    if local:
        definition = _text(definition, f"{where}.definition")
    return Measure(
        key=key,
        display=_text(data.get("display"), f"{where}.display"),
        codes=codes,
        value_type=kind,
        score=score,
        units=units,
        components=tuple(components),
        bands=_bands(data.get("bands"), f"{where}.bands", score),
        definition=definition,
        extra={k: v for k, v in data.items() if k not in _KNOWN},
    )


def parse_measures(data: Any) -> MeasureTable:
    """A MeasureTable from the file's JSON; MeasureFileError names the part at fault."""
    if not isinstance(data, dict) or not isinstance(data.get("measures"), dict):
        raise MeasureFileError("the file must be an object with 'version' and 'measures'")
    version = _text(data.get("version"), "version")
    local = data.get("localCodeSystem")
    if not isinstance(local, dict):
        raise MeasureFileError("localCodeSystem must be an object")
    local_info = {
        k: _text(local.get(k), f"localCodeSystem.{k}")
        for k in ("id", "name", "title", "description")
    }
    measures = {key: _measure(key, item) for key, item in data["measures"].items()}
    if not measures:
        raise MeasureFileError("measures must name at least one measure")
    seen: dict[tuple[str, str], str] = {}
    for measure in measures.values():
        for coding in measure.codes:
            other = seen.setdefault(coding, measure.key)
            if other != measure.key:
                raise MeasureFileError(
                    f"measures.{other} and measures.{measure.key} both claim {coding[1]}"
                )
        for i, component in enumerate(measure.components):
            part = measures.get(component)
            if part is None or part.value_type == "none":
                raise MeasureFileError(
                    f"measures.{measure.key}.components[{i}]: '{component}' is not a measure "
                    "with a value"
                )
    return MeasureTable(version, local_info, measures)


def load_measures(path: Path) -> MeasureTable:
    """Read and check a measures file; any fault is a MeasureFileError naming the file."""
    try:
        return parse_measures(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, json.JSONDecodeError, MeasureFileError) as exc:
        raise MeasureFileError(f"{path.name}: {exc}") from None


@cache
def outcome_measures() -> MeasureTable:
    """The measures shipped with outcomes (loaded once; the app loads it at start)."""
    return load_measures(MEASURES_FILE)
