"""The instruments whose totals outcomes derives from screening responses, and their scoring
rules: a versioned file (baselines/scoring.json, each rule with its source), checked at start."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from services.outcomes.observations.measures import outcome_measures

SCORING_FILE = Path(__file__).resolve().parent / "scoring.json"
SUM, PRORATED = "item-sum", "item-sum-prorated"


class ScoringFileError(ValueError):
    """The scoring file is malformed; the message names the part at fault."""


@dataclass(frozen=True)
class Instrument:
    """One instrument: the Questionnaire group that holds its items, and how they add up."""

    key: str  # the measures.json key of its total (phq9-total, pcl5-total)
    panel: tuple[str, str]  # (system, code) of the Questionnaire group
    items: int
    item_min: int
    item_max: int
    prorated_up_to: int  # most unanswered items that still give a (prorated) total


@dataclass(frozen=True)
class Scoring:
    version: str
    methods: dict[str, Any]  # the method CodeSystem's id, name, title, description, concepts
    instruments: tuple[Instrument, ...]


def _integer(data: Any, where: str, low: int = 0) -> int:
    if isinstance(data, bool) or not isinstance(data, int) or data < low:
        raise ScoringFileError(f"{where} must be an integer of at least {low}")
    return data


def _instrument(key: str, data: Any) -> Instrument:
    where = f"instruments.{key}"
    measure = outcome_measures().measures.get(key)
    if measure is None or measure.score is None:
        raise ScoringFileError(f"{where}: '{key}' is not a score in measures.json")
    if not isinstance(data, dict) or not isinstance(data.get("panel"), dict):
        raise ScoringFileError(f"{where} must be an object with a panel coding")
    panel = (data["panel"].get("system"), data["panel"].get("code"))
    if not all(isinstance(part, str) and part for part in panel):
        raise ScoringFileError(f"{where}.panel needs a system and a code")
    items = _integer(data.get("items"), f"{where}.items", 1)
    score = data.get("itemScore") if isinstance(data.get("itemScore"), dict) else {}
    low = _integer(score.get("min"), f"{where}.itemScore.min")
    high = _integer(score.get("max"), f"{where}.itemScore.max", low)
    up_to = _integer(data.get("proratedUpTo"), f"{where}.proratedUpTo")
    if up_to >= items:
        raise ScoringFileError(f"{where}.proratedUpTo must leave at least one item answered")
    if (items * low, items * high) != (int(measure.score.min), int(measure.score.max)):
        raise ScoringFileError(
            f"{where}: {items} items of {low}-{high} do not give the range of {key} in "
            "measures.json"
        )
    return Instrument(key, (panel[0], panel[1]), items, low, high, up_to)


def parse_scoring(data: Any) -> Scoring:
    """A Scoring from the file's JSON; ScoringFileError names the part at fault."""
    if not isinstance(data, dict) or not isinstance(data.get("instruments"), dict):
        raise ScoringFileError("the file must be an object with 'version' and 'instruments'")
    version = data.get("version")
    methods = data.get("methodCodeSystem")
    if not isinstance(version, str) or not version:
        raise ScoringFileError("version must be a non-empty string")
    if not isinstance(methods, dict) or set(methods.get("concepts") or {}) != {SUM, PRORATED}:
        raise ScoringFileError(f"methodCodeSystem.concepts must define {SUM} and {PRORATED}")
    instruments = tuple(_instrument(k, v) for k, v in data["instruments"].items())
    return Scoring(version, methods, instruments)


@cache
def scoring() -> Scoring:
    """The scoring rules shipped with outcomes (loaded once; the app loads them at start)."""
    try:
        return parse_scoring(json.loads(SCORING_FILE.read_text(encoding="utf-8")))
    except (OSError, json.JSONDecodeError, ScoringFileError) as exc:
        raise ScoringFileError(f"{SCORING_FILE.name}: {exc}") from None


def method_system(canonical_base: str) -> str:
    """The canonical url of the method CodeSystem under the programme's canonical base."""
    return f"{canonical_base.rstrip('/')}/CodeSystem/{scoring().methods['id']}"


def method_code_system(canonical_base: str) -> dict[str, Any]:
    """The method codes as a CodeSystem; its version is the scoring file's."""
    methods = scoring().methods
    concepts = [
        {"code": code, "display": c["display"], "definition": c["definition"]}
        for code, c in methods["concepts"].items()
    ]
    return {
        "resourceType": "CodeSystem",
        "url": method_system(canonical_base),
        "version": scoring().version,
        "name": methods["name"],
        "title": methods["title"],
        "status": "active",
        "experimental": False,
        "description": methods["description"],
        "caseSensitive": True,
        "content": "complete",
        "count": len(concepts),
        "concept": concepts,
    }
