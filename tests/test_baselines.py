"""Issue 11: outcomes derives the baseline PHQ-9 and PCL-5 totals from intake's screening
responses as Observations (derivedFrom the response, method the scoring), following each
instrument's missing-item rule, and keeps them in step as the response changes."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import httpx
import pytest

from services.intake.screening.protocol import questionnaire_definition
from services.outcomes.baselines.instruments import (
    ScoringFileError,
    parse_scoring,
    scoring,
)
from services.outcomes.baselines.scoring import total
from services.outcomes.timeline.tables import SCORES
from shared.events.envelope import ResourceEvent
from tests.conftest import BACKENDS
from tests.factories import patient
from tests.kafka_support import build_app, new_database, serving
from tests.replanning_support import replica_event
from tests.screening_support import BASE, URL, Scores, screening
from tests.timeline_support import rows

__all__ = ["new_database"]

PHQ9, PCL5 = "44261-6", "101698-9"
METHODS = f"{BASE}/CodeSystem/score-derivation"
IDENTIFIER = f"{BASE}/identifier/derived-score"
AUTHORED = "2026-03-01T10:00:00Z"
PHQ9_SCORES: Scores = (1, 2, 3, 0, 1, 2, 3, 0, 1)  # 13
PCL5_SCORES: Scores = (0, 1, 2, 3, 4) * 4  # 40


def _questionnaire() -> dict[str, Any]:
    """The screening Questionnaire as intake publishes it first (its version numbered 1)."""
    return {**questionnaire_definition(BASE), "version": "1"}


def _deliver(client: httpx.AsyncClient, event: ResourceEvent) -> bool:
    """Apply intake's event as the consumer does: replica, reactions, processed-event row."""
    runner = client._transport.app.state.events.consumer  # type: ignore[attr-defined]
    return runner.apply(f"fhir.{event.res_type}", event)


def _send(
    client: httpx.AsyncClient, res_type: str, res_id: str, version: int, body: dict | None
) -> None:
    assert _deliver(client, replica_event(res_type, res_id, version, body))


def _screened(client: httpx.AsyncClient, **scores: Any) -> dict[str, Any]:
    """Patient p1 and the Questionnaire replicated, then p1's response qr1 (version 1)."""
    _send(client, "Patient", "p1", 1, patient())
    _send(client, "Questionnaire", "q1", 1, _questionnaire())
    body = response(**scores)
    _send(client, "QuestionnaireResponse", "qr1", 1, body)
    return body


def response(
    phq9: Scores | None = PHQ9_SCORES, pcl5: Scores | None = PCL5_SCORES, **kw: Any
) -> dict[str, Any]:
    return screening("p1", phq9=phq9, pcl5=pcl5, **kw)


async def _derived(client: httpx.AsyncClient, code: str) -> list[dict[str, Any]]:
    found = await client.get("/Observation", params={"code": f"http://loinc.org|{code}"})
    assert found.status_code == 200, found.text
    return [entry["resource"] for entry in found.json().get("entry", [])]


async def _one(client: httpx.AsyncClient, code: str) -> dict[str, Any]:
    derived = await _derived(client, code)
    assert len(derived) == 1, derived
    return derived[0]


# ---- totals ----------------------------------------------------------------------------
@BACKENDS
async def test_phq9_and_pcl5_totals_derived_from_a_screening(outcomes: httpx.AsyncClient):
    _screened(outcomes)
    phq9 = await _one(outcomes, PHQ9)
    assert phq9["status"] == "final"
    assert phq9["valueInteger"] == 13
    assert phq9["subject"] == {"reference": "Patient/p1"}
    assert phq9["effectiveDateTime"] == AUTHORED
    assert phq9["derivedFrom"] == [{"reference": "QuestionnaireResponse/qr1/_history/1"}]
    assert phq9["method"]["coding"][0]["system"] == METHODS
    assert phq9["method"]["coding"][0]["code"] == "item-sum"
    assert "sum of the 9 item scores" in phq9["method"]["text"]
    assert phq9["category"][0]["coding"][0]["code"] == "survey"
    assert phq9["identifier"] == [
        {"system": IDENTIFIER, "value": "QuestionnaireResponse/qr1/phq9-total"}
    ]
    pcl5 = await _one(outcomes, PCL5)
    assert (pcl5["valueInteger"], pcl5["status"]) == (40, "final")
    assert pcl5["method"]["coding"][0]["code"] == "item-sum"
    # The derived totals are what a search of the patient's scores finds, and the timeline's.
    found = await outcomes.get("/Observation", params={"patient": "Patient/p1"})
    assert found.json()["total"] == 2
    scores = {row["measure"]: row for row in rows(outcomes, SCORES)}
    assert {key: row["value"] for key, row in scores.items()} == {
        "phq9-total": 13.0,
        "pcl5-total": 40.0,
    }
    assert scores["phq9-total"]["derived"] is True
    assert scores["phq9-total"]["effective"] == datetime(2026, 3, 1, 10, 0)


@BACKENDS
async def test_phq9_with_one_item_missing_is_prorated(outcomes: httpx.AsyncClient):
    # 4 over the 8 answered: 4 x 9 / 8 = 4.5, rounded half up (not to the even 4).
    _screened(outcomes, phq9=(1, 1, 1, 1, 0, 0, 0, 0, None))
    phq9 = await _one(outcomes, PHQ9)
    assert phq9["valueInteger"] == 5
    assert phq9["method"]["coding"][0]["code"] == "item-sum-prorated"
    assert "8 of 9 items answered" in phq9["method"]["text"]


@BACKENDS
async def test_phq9_with_two_items_missing_has_no_total(outcomes: httpx.AsyncClient):
    _screened(outcomes, phq9=(3, 3, 3, 3, 3, 3, 3, None, None))
    assert await _derived(outcomes, PHQ9) == []
    assert (await _one(outcomes, PCL5))["valueInteger"] == 40


@BACKENDS
async def test_pcl5_with_an_item_missing_has_no_total(outcomes: httpx.AsyncClient):
    _screened(outcomes, pcl5=(*PCL5_SCORES[:19], None))
    assert await _derived(outcomes, PCL5) == []
    assert (await _one(outcomes, PHQ9))["valueInteger"] == 13


@BACKENDS
async def test_a_screening_without_the_scales_derives_nothing(outcomes: httpx.AsyncClient):
    _screened(outcomes, phq9=None, pcl5=None)
    assert (await outcomes.get("/Observation")).json()["total"] == 0


@BACKENDS
async def test_in_progress_response_derives_nothing(outcomes: httpx.AsyncClient):
    _screened(outcomes, status="in-progress")
    assert (await outcomes.get("/Observation")).json()["total"] == 0


# ---- following the response ------------------------------------------------------------
@BACKENDS
async def test_an_updated_response_amends_the_total(outcomes: httpx.AsyncClient):
    _screened(outcomes)
    first = await _one(outcomes, PHQ9)
    _send(outcomes, "QuestionnaireResponse", "qr1", 2, response(phq9=(3,) * 9, status="amended"))
    phq9 = await _one(outcomes, PHQ9)
    assert phq9["id"] == first["id"]
    assert (phq9["valueInteger"], phq9["status"]) == (27, "amended")
    assert phq9["derivedFrom"] == [{"reference": "QuestionnaireResponse/qr1/_history/2"}]
    assert phq9["meta"]["versionId"] == "2"
    # The unchanged PCL-5 total keeps its status, pointing at the response's new version.
    pcl5 = await _one(outcomes, PCL5)
    assert (pcl5["valueInteger"], pcl5["status"]) == (40, "final")
    assert pcl5["derivedFrom"] == [{"reference": "QuestionnaireResponse/qr1/_history/2"}]


@BACKENDS
async def test_a_total_the_response_no_longer_gives_is_withdrawn(outcomes: httpx.AsyncClient):
    _screened(outcomes)
    two_missing = response(phq9=(1, 1, 1, 1, 1, 1, 1, None, None), status="amended")
    _send(outcomes, "QuestionnaireResponse", "qr1", 2, two_missing)
    phq9 = await _one(outcomes, PHQ9)
    assert phq9["status"] == "entered-in-error"
    # Answered again: the same Observation stands again, amended.
    _send(outcomes, "QuestionnaireResponse", "qr1", 3, response(status="amended"))
    phq9 = await _one(outcomes, PHQ9)
    assert (phq9["status"], phq9["valueInteger"]) == ("amended", 13)


@BACKENDS
@pytest.mark.parametrize("how", ["deleted", "entered-in-error"])
async def test_a_withdrawn_response_takes_its_totals_with_it(outcomes: httpx.AsyncClient, how: str):
    _screened(outcomes)
    body = None if how == "deleted" else response(status="entered-in-error")
    _send(outcomes, "QuestionnaireResponse", "qr1", 2, body)
    for code in (PHQ9, PCL5):
        assert (await _one(outcomes, code))["status"] == "entered-in-error"
    # Nothing left of them in a search of standing scores, nor in the timeline.
    found = await outcomes.get("/Observation", params={"status": "final,amended"})
    assert found.json()["total"] == 0
    assert rows(outcomes, SCORES) == []


@BACKENDS
async def test_a_redelivered_version_changes_nothing(outcomes: httpx.AsyncClient):
    body = _screened(outcomes)
    event = replica_event("QuestionnaireResponse", "qr1", 1, body)
    assert _deliver(outcomes, event)
    assert not _deliver(outcomes, event)  # the same event: skipped before its reactions
    # The same version again in another envelope (a replay): the reaction runs, writes nothing.
    assert _deliver(outcomes, replica_event("QuestionnaireResponse", "qr1", 1, body))
    phq9 = await _one(outcomes, PHQ9)
    assert phq9["meta"]["versionId"] == "1"
    history = await outcomes.get(f"/Observation/{phq9['id']}/_history")
    assert history.json()["total"] == 1


@BACKENDS
async def test_an_old_version_arriving_late_does_not_undo_a_newer(outcomes: httpx.AsyncClient):
    first = _screened(outcomes)
    _send(outcomes, "QuestionnaireResponse", "qr1", 2, response(phq9=(3,) * 9, status="amended"))
    assert _deliver(outcomes, replica_event("QuestionnaireResponse", "qr1", 1, first))
    assert (await _one(outcomes, PHQ9))["valueInteger"] == 27


@BACKENDS
async def test_a_late_patient_or_questionnaire_event_derives_the_totals(
    outcomes: httpx.AsyncClient,
):
    # The response first: neither its patient nor its Questionnaire is here yet.
    _send(outcomes, "QuestionnaireResponse", "qr1", 1, response())
    assert (await outcomes.get("/Observation")).json()["total"] == 0
    _send(outcomes, "Patient", "p1", 1, patient())
    assert (await outcomes.get("/Observation")).json()["total"] == 0
    _send(outcomes, "Questionnaire", "q1", 1, _questionnaire())
    assert (await _one(outcomes, PHQ9))["valueInteger"] == 13
    assert (await _one(outcomes, PCL5))["valueInteger"] == 40


@BACKENDS
async def test_a_response_to_an_unknown_questionnaire_version_derives_nothing(
    outcomes: httpx.AsyncClient,
):
    _screened(outcomes, version="7")
    assert (await outcomes.get("/Observation")).json()["total"] == 0


async def test_the_method_codes_are_a_published_code_system(new_database):
    app = build_app("outcomes", new_database("outcomes"), resync_on_start=False)
    async with serving(app) as client:
        found = (await client.get("/CodeSystem", params={"url": METHODS})).json()
    app.state.fhir.database.dispose()
    (entry,) = found["entry"]
    assert entry["resource"]["version"] == scoring().version
    codes = [c["code"] for c in entry["resource"]["concept"]]
    assert codes == ["item-sum", "item-sum-prorated"]


# ---- scoring as plain functions ---------------------------------------------------------
def _phq9() -> Any:
    return next(i for i in scoring().instruments if i.key == "phq9-total")


def test_scores_come_from_the_questionnaire_not_the_answer():
    questionnaire = _questionnaire()
    body = response()
    # An answer claiming another score in its coding's extension changes nothing.
    group = next(item for item in body["item"] if item["linkId"] == "phq-9")
    coding = group["item"][0]["answer"][0]["valueCoding"]
    coding["extension"] = [
        {"url": "http://hl7.org/fhir/StructureDefinition/ordinalValue", "valueDecimal": 3}
    ]
    assert total(_phq9(), questionnaire, body).value == 13


def test_item_weight_on_the_option_is_a_score_too():
    questionnaire = _questionnaire()
    group = next(item for item in questionnaire["item"] if item["linkId"] == "phq-9")
    for question in group["item"]:
        for option in question["answerOption"]:
            (ordinal,) = option["valueCoding"].pop("extension")
            weight = "http://hl7.org/fhir/StructureDefinition/itemWeight"
            option["extension"] = [{"url": weight, "valueDecimal": ordinal["valueDecimal"]}]
    assert total(_phq9(), questionnaire, response()).value == 13


def test_an_answer_not_among_the_options_counts_as_missing():
    body = response()
    group = next(item for item in body["item"] if item["linkId"] == "phq-9")
    group["item"][0]["answer"][0]["valueCoding"]["code"] = "LA-unknown"
    found = total(_phq9(), _questionnaire(), body)
    # 12 over the 8 scoreable items: 12 x 9 / 8 = 13.5, half up.
    assert (found.value, found.answered) == (14, 8)


def test_the_scoring_file_must_agree_with_the_measures():
    data = {
        "version": "1",
        "methodCodeSystem": {"concepts": {"item-sum": {}, "item-sum-prorated": {}}},
        "instruments": {
            "phq9-total": {
                "panel": {"system": "http://loinc.org", "code": "44249-1"},
                "items": 9,
                "itemScore": {"min": 0, "max": 4},
                "proratedUpTo": 1,
            }
        },
    }
    with pytest.raises(ScoringFileError, match=r"instruments\.phq9-total: 9 items of 0-4"):
        parse_scoring(data)
    data["instruments"]["phq9-total"]["itemScore"]["max"] = 3
    assert parse_scoring(data).instruments[0].prorated_up_to == 1


def test_the_screening_canonical_is_the_one_intake_publishes():
    assert response()["questionnaire"] == f"{URL}|1"
