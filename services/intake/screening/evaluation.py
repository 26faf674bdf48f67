"""Checking and evaluating a screening response: plain functions over the response, the
Questionnaire, the rule table and the consent state, so a Consent rule can call them again."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from services.intake.screening.answer_options import answered_items, check_answer_options
from services.intake.screening.answer_types import check_answer_types
from services.intake.screening.protocol import Rule, RuleTable, all_items
from shared.fhir.errors import invalid

# Plausible ranges: outside them the value is a typing error, not a finding.
_PLAUSIBLE = {"systolic-bp": (50, 300), "body-weight": (20, 400)}
EVALUATED = ("completed", "amended")


@dataclass(frozen=True)
class Finding:
    """A contraindication found, with its reason in words."""

    rule: Rule
    detail: str


@dataclass(frozen=True)
class Evaluation:
    findings: tuple[Finding, ...]
    episode_status: str


def answers(response: dict[str, Any]) -> dict[str, Any]:
    """linkId -> the first answer's value (booleans, quantity values as Decimal, text)."""
    found: dict[str, Any] = {}
    for item, _ in answered_items(response.get("item", []), "QuestionnaireResponse"):
        for answer in item.get("answer", [])[:1]:
            for key, value in answer.items():
                if key.startswith("value"):
                    if key == "valueQuantity":
                        value = value.get("value")
                        value = None if value is None else Decimal(str(value))
                    found[item["linkId"]] = value
    return found


def validate(response: dict[str, Any], questionnaire: dict[str, Any]) -> None:
    """422 naming each missing required linkId (completed responses), each answer not among
    its item's answerOptions, of the wrong type or unit, or implausible."""
    # Types first: the checks below and the evaluation read values as their item's type.
    check_answer_types(response, questionnaire)
    given = answers(response)
    if response.get("status") in EVALUATED:
        required = [
            i["linkId"] for i in all_items(questionnaire.get("item", [])) if i.get("required")
        ]
        missing = [link for link in required if given.get(link) is None]
        if missing:
            raise invalid(
                f"A {response['status']} response must answer every required item; missing: "
                + ", ".join(missing),
                [f"QuestionnaireResponse.item.where(linkId='{link}')" for link in missing],
            )
    check_answer_options(response, questionnaire)
    wrong: dict[str, str] = {}
    for link, (low, high) in _PLAUSIBLE.items():
        value = given.get(link)
        if value is not None and not low <= value <= high:
            wrong[link] = f"{link} must lie between {low} and {high}"
    systolic, diastolic = given.get("systolic-bp"), given.get("diastolic-bp")
    if diastolic is not None and (
        diastolic <= 0 or (systolic is not None and diastolic >= systolic)
    ):
        wrong["diastolic-bp"] = "diastolic-bp must be above 0 and below systolic-bp"
    if wrong:
        raise invalid(
            "Implausible answers: " + "; ".join(wrong.values()),
            [f"QuestionnaireResponse.item.where(linkId='{link}')" for link in wrong],
        )


def evaluate(response: dict[str, Any], table: RuleTable, *, consent_active: bool) -> Evaluation:
    """The contraindications a completed response shows, and the episode status they imply:
    absolute -> cancelled; relative (BP above the threshold included) -> onhold; all clear ->
    active with an active treatment Consent, waitlist without."""
    given = answers(response)
    findings = [
        Finding(rule, f"{rule.display}: answered yes at screening")
        for rule in table.rules
        if given.get(rule.key) is True
    ]
    systolic, diastolic = given.get("systolic-bp"), given.get("diastolic-bp")
    high_systolic = systolic is not None and systolic > Decimal(str(table.systolic_above))
    high_diastolic = diastolic is not None and diastolic > Decimal(str(table.diastolic_above))
    if high_systolic or high_diastolic:
        detail = (
            f"Baseline blood pressure {systolic}/{diastolic} mmHg is above "
            f"{table.systolic_above:g}/{table.diastolic_above:g}"
        )
        rule = table.rule(table.bp_rule)
        findings = [f for f in findings if f.rule.key != rule.key] + [Finding(rule, detail)]
    kinds = {finding.rule.kind for finding in findings}
    if "absolute" in kinds:
        status = "cancelled"
    elif kinds:
        status = "onhold"
    else:
        status = "active" if consent_active else "waitlist"
    return Evaluation(tuple(findings), status)
