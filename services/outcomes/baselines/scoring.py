"""An instrument's total from a QuestionnaireResponse, with the item scores the Questionnaire it
answers gives its answer options (plain functions over the two resources)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from services.outcomes.baselines.instruments import PRORATED, SUM, Instrument
from shared.fhir.answers import answer_value, same_answer

# Where a Questionnaire puts an answer option's score: R4's ordinalValue (on the option or on
# its valueCoding), or itemWeight (its successor in R5 and SDC).
SCORE_EXTENSIONS = (
    "http://hl7.org/fhir/StructureDefinition/ordinalValue",
    "http://hl7.org/fhir/StructureDefinition/itemWeight",
)


@dataclass(frozen=True)
class Total:
    """An instrument's total, and how many of its items it rests on."""

    instrument: Instrument
    value: int
    answered: int

    @property
    def method(self) -> str:
        return SUM if self.answered == self.instrument.items else PRORATED

    @property
    def unanswered(self) -> int:
        return self.instrument.items - self.answered


def _extension_score(element: Any) -> Decimal | None:
    extensions = element.get("extension") if isinstance(element, dict) else None
    for extension in extensions if isinstance(extensions, list) else []:
        if isinstance(extension, dict) and extension.get("url") in SCORE_EXTENSIONS:
            number = extension.get("valueDecimal", extension.get("valueInteger"))
            if isinstance(number, int | float | Decimal) and not isinstance(number, bool):
                return Decimal(str(number))
    return None


def option_score(option: dict[str, Any]) -> Decimal | None:
    """The score an answer option carries (on itself, or on its valueCoding), if any."""
    found = _extension_score(option)
    return found if found is not None else _extension_score(option.get("valueCoding"))


def instrument_group(
    questionnaire: dict[str, Any], panel: tuple[str, str]
) -> dict[str, Any] | None:
    """The Questionnaire group coded with the instrument's panel code, at any depth."""
    stack = list(questionnaire.get("item") or [])
    while stack:
        item = stack.pop(0)
        codes = item.get("code") or []
        if item.get("type") == "group" and any(
            (c.get("system"), c.get("code")) == panel for c in codes if isinstance(c, dict)
        ):
            return item
        stack.extend(item.get("item") or [])
    return None


def _answers(items: list[dict[str, Any]]) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """(linkId, answers) of every response item, nested ones too."""
    for item in items:
        yield item.get("linkId"), item.get("answer") or []
        yield from _answers(item.get("item") or [])
        for answer in item.get("answer") or []:
            yield from _answers(answer.get("item") or [])


def _item_score(
    question: dict[str, Any], answers: list[dict[str, Any]], instrument: Instrument
) -> int | None:
    """The score of one question's answer; None when it is unanswered or cannot be scored (no
    single answer, not among the options, or an option score outside the item's range)."""
    if len(answers) != 1 or (given := answer_value(answers[0])) is None:
        return None
    for option in question.get("answerOption") or []:
        listed = answer_value(option)
        if listed is not None and same_answer(given, listed):
            score = option_score(option)
            if score is None or score != score.to_integral():
                return None
            if not instrument.item_min <= score <= instrument.item_max:
                return None
            return int(score)
    return None


def total(
    instrument: Instrument, questionnaire: dict[str, Any], response: dict[str, Any]
) -> Total | None:
    """The instrument's total from the response's answers, or None: the Questionnaire has no
    such group of that many items, or more items are unanswered than the rule allows."""
    group = instrument_group(questionnaire, instrument.panel)
    questions = [q for q in (group or {}).get("item") or [] if q.get("type") != "display"]
    if len(questions) != instrument.items:
        return None
    given = dict(_answers(response.get("item") or []))
    scores = [_item_score(q, given.get(q.get("linkId"), []), instrument) for q in questions]
    answered = [score for score in scores if score is not None]
    if instrument.items - len(answered) > instrument.prorated_up_to:
        return None
    value = Decimal(sum(answered)) * instrument.items / len(answered)
    return Total(instrument, int(value.quantize(Decimal(1), ROUND_HALF_UP)), len(answered))
