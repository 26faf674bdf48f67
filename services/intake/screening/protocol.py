"""The screening protocol as files in the repository: the rule table and the Questionnaire.

Both are configurable defaults (a clinic's protocol may change them): they are loaded at
start, never written into code.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Literal

PROTOCOLS = Path(__file__).resolve().parent.parent / "protocols"
RULES_FILE = PROTOCOLS / "contraindication-rules.json"
QUESTIONNAIRE_FILE = PROTOCOLS / "screening-questionnaire.json"
SNOMED = "http://snomed.info/sct"


@dataclass(frozen=True)
class Rule:
    """One contraindication: its key is the item's linkId and the DetectedIssue's code."""

    key: str
    kind: Literal["absolute", "relative"]
    display: str
    source: str
    snomed: tuple[dict[str, str], ...] = ()


@dataclass(frozen=True)
class RuleTable:
    """The versioned rule table plus the baseline blood pressure threshold."""

    version: str
    rules: tuple[Rule, ...]
    bp_rule: str
    systolic_above: float
    diastolic_above: float

    def rule(self, key: str) -> Rule:
        return next(rule for rule in self.rules if rule.key == key)


def parse_rule_table(data: dict[str, Any]) -> RuleTable:
    """A RuleTable from the file's JSON; a malformed table fails the start, not a request."""
    rules = tuple(
        Rule(
            key=item["key"],
            kind=item["kind"],
            display=item["display"],
            source=item["source"],
            snomed=tuple(item.get("snomed", ())),
        )
        for item in data["rules"]
    )
    for rule in rules:
        if rule.kind not in ("absolute", "relative"):
            raise ValueError(f"rule {rule.key}: kind must be absolute or relative")
    if len({rule.key for rule in rules}) != len(rules):
        raise ValueError("rule keys must be unique")
    bp = data["bloodPressure"]
    table = RuleTable(
        version=str(data["version"]),
        rules=rules,
        bp_rule=bp["rule"],
        systolic_above=float(bp["systolicAbove"]),
        diastolic_above=float(bp["diastolicAbove"]),
    )
    table.rule(table.bp_rule)  # the threshold must raise a rule the table has
    return table


@cache
def rule_table() -> RuleTable:
    """The rule table shipped with intake."""
    return parse_rule_table(json.loads(RULES_FILE.read_text()))


def _with_base(node: Any, canonical_base: str) -> Any:
    """`node` with `{canonical_base}` filled in every string (urls, local code systems)."""
    if isinstance(node, str):
        return node.replace("{canonical_base}", canonical_base)
    if isinstance(node, list):
        return [_with_base(value, canonical_base) for value in node]
    if isinstance(node, dict):
        return {key: _with_base(value, canonical_base) for key, value in node.items()}
    return node


def all_items(items: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Every item of a Questionnaire's item tree, groups and their items alike."""
    for item in items:
        yield item
        yield from all_items(item.get("item", []))


def questionnaire_definition(canonical_base: str) -> dict[str, Any]:
    """The screening Questionnaire from its file, its urls under `canonical_base`."""
    definition = _with_base(json.loads(QUESTIONNAIRE_FILE.read_text()), canonical_base)
    links = [item["linkId"] for item in all_items(definition["item"])]
    twice = sorted({link for link in links if links.count(link) > 1})
    if twice:
        # Answers are looked up by linkId across groups: each must name one item.
        raise ValueError(f"the screening Questionnaire repeats linkIds {twice}")
    # Rule items are top-level booleans (the evaluation and EHR forms rely on it).
    keys = {item["linkId"] for item in definition["item"] if item["type"] == "boolean"}
    missing = [rule.key for rule in rule_table().rules if rule.key not in keys]
    if missing:
        # Each rule is answered by the item of the same linkId: a rule without one never fires.
        raise ValueError(f"the screening Questionnaire lacks items for rules {missing}")
    return definition


def pcl5_response_code_system(questionnaire: dict[str, Any]) -> dict[str, Any]:
    """The local codes of the PCL-5 answers, as the Questionnaire's answerOptions name them
    (LOINC answer codes for the PCL-5 were not confirmed)."""
    group = next(item for item in questionnaire["item"] if item["linkId"] == "pcl-5")
    codings = [option["valueCoding"] for option in group["item"][0]["answerOption"]]
    return {
        "resourceType": "CodeSystem",
        "url": codings[0]["system"],
        "name": "KemdrPcl5Response",
        "title": "PCL-5 response options",
        "status": "active",
        "content": "complete",
        "concept": [{"code": c["code"], "display": c["display"]} for c in codings],
    }


def screening_url(canonical_base: str) -> str:
    return f"{canonical_base}/Questionnaire/ketamine-emdr-screening"


def code_system_url(canonical_base: str) -> str:
    """The programme CodeSystem of the contraindication rule keys."""
    return f"{canonical_base}/CodeSystem/contraindication"


def rule_table_extension_url(canonical_base: str) -> str:
    """The extension recording on an EpisodeOfCare which rule table decided its status."""
    return f"{canonical_base}/StructureDefinition/screening-rule-table-version"


def code_system(canonical_base: str, table: RuleTable) -> dict[str, Any]:
    """The rule keys as a FHIR CodeSystem (its version is the rule table's)."""
    return {
        "resourceType": "CodeSystem",
        "url": code_system_url(canonical_base),
        "version": table.version,
        "name": "KemdrContraindication",
        "status": "active",
        "content": "complete",
        "concept": [
            {"code": rule.key, "display": rule.display, "definition": rule.kind}
            for rule in table.rules
        ],
    }
