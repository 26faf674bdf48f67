"""Per-kg doses: the latest body weight (measured, else screened), the mg/kg kept on the
administration and its event, checked against the protocol's range (issue 10)."""

from __future__ import annotations

from typing import Any

import httpx

from tests.conftest import BACKENDS
from tests.dosing_support import BASE, INJECTION, OVERRIDE, dose
from tests.fhir_asserts import assert_outcome
from tests.holds_support import ready, weight
from tests.outbox_rows import events_of
from tests.replicas import replicate

PER_KG = f"{BASE}/StructureDefinition/dose-per-kg"
IV = {"medication": INJECTION, "route": "iv"}


def _per_kg(resource: dict[str, Any]) -> float:
    (found,) = [e for e in resource.get("extension", []) if e["url"] == PER_KG]
    assert found["valueQuantity"]["code"] == "mg/kg"
    return found["valueQuantity"]["value"]


def screening(patient_id: str, answer: dict[str, Any], status: str = "completed") -> dict:
    item = {"linkId": "body-weight", "answer": [answer]}
    return {
        "resourceType": "QuestionnaireResponse",
        "status": status,
        "subject": {"reference": f"Patient/{patient_id}"},
        "authored": "2026-02-01T10:00:00Z",
        "item": [{"linkId": "vitals", "item": [item]}],
    }


@BACKENDS
async def test_the_newest_measured_weight_gives_the_mg_per_kg_and_the_event_carries_it(
    scheduling: httpx.AsyncClient,
):
    await ready(scheduling, "w1", kg=None)
    old = weight("w1", 50, effectiveDateTime="2026-01-01T09:00:00Z")
    replicate(scheduling, "Observation", "old", old)
    replicate(scheduling, "Observation", "lb", weight("w1", 154.32, unit="[lb_av]"))
    created = await scheduling.post("/MedicationAdministration", json=dose("w1", mg=35, **IV))
    assert created.status_code == 201, created.text
    assert _per_kg(created.json()) == 0.5  # 154.32 lb is 70 kg
    (event,) = events_of(scheduling, "MedicationAdministration")
    assert _per_kg(event["data"]) == 0.5


async def test_without_a_measured_weight_the_screening_answer_is_used(
    scheduling: httpx.AsyncClient,
):
    await ready(scheduling, "w2", kg=None)
    answer = {
        "valueQuantity": {
            "value": 80,
            "unit": "kg",
            "system": "http://unitsofmeasure.org",
            "code": "kg",
        }
    }
    replicate(
        scheduling,
        "QuestionnaireResponse",
        "draft",
        screening("w2", {"valueDecimal": 40}, "in-progress"),
    )
    replicate(scheduling, "QuestionnaireResponse", "screen", screening("w2", answer))
    created = await scheduling.post("/MedicationAdministration", json=dose("w2", mg=40, **IV))
    assert created.status_code == 201, created.text
    assert _per_kg(created.json()) == 0.5


async def test_a_per_kg_dose_without_any_weight_is_refused(scheduling: httpx.AsyncClient):
    await ready(scheduling, "w3", kg=None)
    refused = await scheduling.post("/MedicationAdministration", json=dose("w3", **IV))
    outcome = assert_outcome(refused, 422, "business-rule")
    assert "no body weight of the patient is known" in outcome["diagnostics"]
    assert outcome["expression"][0] == "MedicationAdministration.subject"


async def test_the_per_kg_range_is_checked_and_an_override_kept(scheduling: httpx.AsyncClient):
    await ready(scheduling, "w4", kg=None)
    replicate(scheduling, "Observation", "w", weight("w4", 70))
    body = dose("w4", mg=70, **IV)  # 1.00 mg/kg, above 0.75
    outcome = assert_outcome(
        await scheduling.post("/MedicationAdministration", json=body), 422, "business-rule"
    )
    assert "70 mg is 1.00 mg/kg at 70 kg" in outcome["diagnostics"]
    assert OVERRIDE in outcome["diagnostics"]
    forced = dose("w4", mg=70, override="treatment-resistant, after review", **IV)
    created = await scheduling.post("/MedicationAdministration", json=forced)
    assert created.status_code == 201, created.text
    assert _per_kg(created.json()) == 1.0
    sent = {
        **dose("w4", mg=35, **IV),
        "extension": [{"url": PER_KG, "valueQuantity": {"value": 9}}],
    }
    recomputed = await scheduling.post("/MedicationAdministration", json=sent)
    assert _per_kg(recomputed.json()) == 0.5  # never the client's
