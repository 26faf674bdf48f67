"""Choice answers: an answer to an item that lists answerOptions must be one of them."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from services.intake.screening.protocol import all_items
from shared.fhir.answers import answer_value, same_answer
from shared.fhir.errors import invalid


def answered_items(items: list[dict[str, Any]], path: str) -> Iterator[tuple[dict[str, Any], str]]:
    """Each response item (nested ones too) with the FHIRPath naming it."""
    for item in items:
        here = f"{path}.item.where(linkId='{item.get('linkId')}')"
        yield item, here
        yield from answered_items(item.get("item", []), here)
        for n, answer in enumerate(item.get("answer", [])):
            yield from answered_items(answer.get("item", []), f"{here}.answer[{n}]")


def check_answer_options(response: dict[str, Any], questionnaire: dict[str, Any]) -> None:
    """422 naming each item (linkId and FHIRPath) whose answer is not among its options; an
    open-choice item may also be answered in free text."""
    tree = all_items(questionnaire.get("item", []))
    items = {item["linkId"]: item for item in tree if "answerOption" in item}
    wrong: list[tuple[str, str]] = []
    for item, path in answered_items(response.get("item", []), "QuestionnaireResponse"):
        listed = items.get(item.get("linkId"))
        if listed is None:
            continue
        options = [answer_value(option) for option in listed["answerOption"]]
        for n, answer in enumerate(item.get("answer", [])):
            given = answer_value(answer)
            free_text = listed.get("type") == "open-choice" and given and given[0] == "valueString"
            if given is None or free_text:
                continue
            if not any(option and same_answer(given, option) for option in options):
                wrong.append((listed["linkId"], f"{path}.answer[{n}]"))
    if wrong:
        raise invalid(
            "Answers not among their item's answerOptions: " + ", ".join(link for link, _ in wrong),
            [path for _, path in wrong],
        )
