"""The dose check: UCUM mg, within the protocol's range, or an override with its reason."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from services.scheduling.dosing.dose import absolute_problem, per_kg_problem
from services.scheduling.dosing.protocol import dosing_protocols
from tests.conftest import BACKENDS
from tests.dosing_support import INJECTION, OVERRIDE, SPRAVATO, dose
from tests.fhir_asserts import assert_outcome
from tests.holds_support import ready

TABLE = dosing_protocols()
DOSE = "MedicationAdministration.dosage.dose"
NASAL = {"medication": SPRAVATO, "route": "nasal"}


@pytest.fixture(autouse=True)
async def _sessions(scheduling: httpx.AsyncClient) -> None:
    """p1 weighs 70 kg, heavy 100 kg; each has a booked dosing session."""
    await ready(scheduling, "p1")
    await ready(scheduling, "heavy", kg=100, psychiatrist="Practitioner/dr-2")


@pytest.mark.parametrize(
    ("body", "text"),
    [
        (dose("p1", mg=112, **NASAL), "outside the dose range of intranasal-esketamine"),
        (dose("p1", mg=14, **NASAL), "(28 to 84 mg)"),
        (dose("p1", mg=42, **NASAL), "not a multiple of 28 mg"),
        # 0.7 mg/kg at 100 kg: in the per-kg range, above the absolute ceiling.
        (dose("heavy", mg=70, medication=INJECTION, route="im"), "above the 60 mg ceiling"),
    ],
)
async def test_an_out_of_range_dose_is_refused_naming_the_rule_and_range(
    scheduling: httpx.AsyncClient, body: dict[str, Any], text: str
):
    refused = await scheduling.post("/MedicationAdministration", json=body)
    outcome = assert_outcome(refused, 422, "business-rule")
    assert outcome["expression"] == [DOSE]
    assert outcome["diagnostics"].startswith("Dose range rule: ")
    assert text in outcome["diagnostics"]
    assert OVERRIDE in outcome["diagnostics"]


@BACKENDS
async def test_an_override_with_a_reason_is_accepted_and_kept(scheduling: httpx.AsyncClient):
    body = dose("p1", mg=112, override="psychiatrist's order after review", **NASAL)
    created = await scheduling.post("/MedicationAdministration", json=body)
    assert created.status_code == 201, created.text
    kept = [e for e in created.json()["extension"] if e["url"] == OVERRIDE]
    assert kept == [{"url": OVERRIDE, "valueString": "psychiatrist's order after review"}]
    blank = dose("p1", mg=112, override=" ", **NASAL)
    outcome = assert_outcome(
        await scheduling.post("/MedicationAdministration", json=blank), 422, "invalid"
    )
    assert outcome["expression"] == [f"MedicationAdministration.extension('{OVERRIDE}')"]


@pytest.mark.parametrize(
    "body",
    [
        dose("p1", mg=56, unit="mL", **NASAL),
        {**dose("p1", **NASAL), "dosage": {**dose("p1", **NASAL)["dosage"], "dose": {"value": 56}}},
        dose("p1", mg=None, **NASAL),
    ],
)
async def test_the_dose_is_a_quantity_in_mg(scheduling: httpx.AsyncClient, body: dict[str, Any]):
    refused = await scheduling.post("/MedicationAdministration", json=body)
    assert assert_outcome(refused, 422, "invalid")["expression"] == [DOSE]


async def test_in_range_doses_pass(scheduling: httpx.AsyncClient):
    for body in (
        dose("p1", mg=84, **NASAL),
        dose("p1", mg=35, medication=INJECTION, route="iv"),  # per kg: needs the weight
        dose("p1", mg=None, status="in-progress", **NASAL),  # no dose yet
    ):
        created = await scheduling.post("/MedicationAdministration", json=body)
        assert created.status_code == 201, created.text


def test_the_per_kg_range_with_a_weight():
    iv = TABLE.protocols["iv-racemic"]
    assert per_kg_problem(iv.dose, 35, 70, iv.reference) is None  # 0.5 mg/kg
    assert "0.86 mg/kg at 70 kg" in (per_kg_problem(iv.dose, 60, 70, iv.reference) or "")
    assert "(0.2 to 0.75 mg/kg)" in (per_kg_problem(iv.dose, 10, 70, iv.reference) or "")
    im = TABLE.protocols["im-racemic"]
    assert "60 mg ceiling" in (per_kg_problem(im.dose, 65, 100, im.reference) or "")
    nasal = TABLE.protocols["intranasal-esketamine"]
    assert per_kg_problem(nasal.dose, 56, 70, nasal.reference) is None  # an mg protocol
    with pytest.raises(ValueError):
        per_kg_problem(iv.dose, 35, 0, iv.reference)
    assert absolute_problem(iv.dose, 200, iv.reference) is None  # no ceiling without weight
    assert absolute_problem(iv.dose, 0, iv.reference) == "A dose of 0 mg is not a dose"
