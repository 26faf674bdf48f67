"""QuestionnaireResponse answers against a Questionnaire's answerOptions (generic FHIR)."""

from __future__ import annotations

from typing import Any


def answer_value(element: dict[str, Any]) -> tuple[str, Any] | None:
    """The (value[x] key, value) of an answer or an answerOption."""
    return next(((k, v) for k, v in element.items() if k.startswith("value")), None)


def same_answer(answer: tuple[str, Any], option: tuple[str, Any]) -> bool:
    """Whether an answer's value is the option's: a coding by system and code alone (its
    display and extensions, such as the item score, may differ)."""
    if answer[0] != option[0]:
        return False
    if answer[0] == "valueCoding":
        given, listed = answer[1], option[1]
        return isinstance(given, dict) and all(
            given.get(key) == listed.get(key) for key in ("system", "code")
        )
    return answer[1] == option[1]
