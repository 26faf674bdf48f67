"""The screening protocol as files in the repository: the rule table and the Questionnaire.

Both are configurable defaults (a clinic's protocol may change them): they are loaded at
start, never written into code.
"""

from __future__ import annotations

import json
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


def questionnaire_definition(canonical_base: str) -> dict[str, Any]:
    """The screening Questionnaire from its file, its url under `canonical_base`."""
    definition = json.loads(QUESTIONNAIRE_FILE.read_text())
    definition["url"] = definition["url"].replace("{canonical_base}", canonical_base)
    keys = {item["linkId"] for item in definition["item"]}
    missing = [rule.key for rule in rule_table().rules if rule.key not in keys]
    if missing:
        # Each rule is answered by the item of the same linkId: a rule without one never fires.
        raise ValueError(f"the screening Questionnaire lacks items for rules {missing}")
    return definition


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
