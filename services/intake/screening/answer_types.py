"""Answer types: each answer has the value[x] its item's type calls for, in the item's unit.

Screening reads answers by linkId, so an answer of another type (`"true"` as a string for a
boolean contraindication, a blood pressure as text, a weight in pounds) would otherwise be
misread or silently ignored: a missed contraindication, not a mere format error.
"""

from __future__ import annotations

from typing import Any

from services.intake.screening.answer_options import answered_items
from services.intake.screening.protocol import all_items
from shared.fhir.errors import invalid

UNIT_EXTENSION = "http://hl7.org/fhir/StructureDefinition/questionnaire-unit"
UCUM = "http://unitsofmeasure.org"
# The value[x] an answer to each item type may carry (R4 Questionnaire.item.type).
_VALUE_KEYS: dict[str, tuple[str, ...]] = {
    "boolean": ("valueBoolean",),
    "decimal": ("valueDecimal",),
    "integer": ("valueInteger",),
    "date": ("valueDate",),
    "dateTime": ("valueDateTime",),
    "time": ("valueTime",),
    "string": ("valueString",),
    "text": ("valueString",),
    "url": ("valueUri",),
    "choice": ("valueCoding",),
    "open-choice": ("valueCoding", "valueString"),
    "attachment": ("valueAttachment",),
    "reference": ("valueReference",),
    "quantity": ("valueQuantity",),
}


def _unit(item: dict[str, Any]) -> dict[str, Any] | None:
    return next(
        (e.get("valueCoding") for e in item.get("extension", []) if e.get("url") == UNIT_EXTENSION),
        None,
    )


def _problem(item: dict[str, Any], answer: dict[str, Any]) -> str | None:
    """What is wrong with one answer to `item`, or None."""
    keys = [key for key in answer if key.startswith("value")]
    allowed = _VALUE_KEYS.get(item.get("type", ""), ())
    if not keys:
        return None
    if item.get("type") in ("group", "display"):
        return f"a {item['type']} item takes no answer"
    if keys[0] not in allowed:
        return f"answered as {keys[0]}, expected {' or '.join(allowed)}"
    unit = _unit(item)
    if keys[0] == "valueQuantity" and unit is not None:
        quantity = answer["valueQuantity"]
        if quantity.get("system") != unit.get("system", UCUM) or quantity.get("code") != unit.get(
            "code"
        ):
            return f"must be in {unit.get('code')} ({unit.get('system', UCUM)} code)"
    return None


def check_answer_types(response: dict[str, Any], questionnaire: dict[str, Any]) -> None:
    """422 naming each answer whose value[x] or unit does not fit its item, and each item the
    Questionnaire does not have."""
    items = {item["linkId"]: item for item in all_items(questionnaire.get("item", []))}
    wrong: list[tuple[str, str]] = []
    for item, path in answered_items(response.get("item", []), "QuestionnaireResponse"):
        link = item.get("linkId")
        declared = items.get(link)
        if declared is None:
            wrong.append((f"{link}: no such item in the Questionnaire", path))
            continue
        for n, answer in enumerate(item.get("answer", [])):
            problem = _problem(declared, answer)
            if problem is not None:
                wrong.append((f"{link} {problem}", f"{path}.answer[{n}]"))
    if wrong:
        raise invalid(
            "Answers that do not fit their items: " + "; ".join(what for what, _ in wrong),
            [path for _, path in wrong],
        )
