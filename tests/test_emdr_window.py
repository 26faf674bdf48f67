"""The EMDR window rule: an EMDR session of a patient on a dosing course lies inside its
dose's plasticity window and records that dose, the offset computed by the server."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import httpx

from tests.booking_support import rule_of, session
from tests.conftest import BACKENDS
from tests.finding_support import OPENED_BY, OVERRIDE, ended, fhir, given_dose, opened
from tests.scheduling_support import expressions

DR = "Practitioner/dr-emdr"


def _emdr(patient: str, start: datetime, **extra: Any) -> dict[str, Any]:
    body = session(
        "emdr", fhir(start), fhir(start + timedelta(hours=1)), patient=f"Patient/{patient}"
    )
    body["participant"][1]["actor"]["reference"] = DR
    return {**body, **extra}


def _opened_by(dose_id: str, offset: float) -> dict[str, Any]:
    return {
        "url": OPENED_BY,
        "extension": [
            {"url": "dose", "valueReference": {"reference": f"MedicationAdministration/{dose_id}"}},
            {"url": "offset-hours", "valueDecimal": offset},
        ],
    }


@BACKENDS
async def test_the_server_records_the_dose_and_computes_the_offset(
    scheduling: httpx.AsyncClient,
):
    end = ended()
    dose_id = await given_dose(scheduling, "p1", end)
    created = await scheduling.post("/Appointment", json=_emdr("p1", end + timedelta(hours=26)))
    assert created.status_code == 201, created.text
    assert opened(created.json()) == {
        "dose": {"reference": f"MedicationAdministration/{dose_id}"},
        "offset-hours": 26,
    }
    # A client's offset is not trusted: the server's replaces it.
    claimed = _emdr("p1", end + timedelta(hours=50), extension=[_opened_by(dose_id, 3)])
    created = await scheduling.post("/Appointment", json=claimed)
    assert created.status_code == 201, created.text
    assert opened(created.json())["offset-hours"] == 50


@BACKENDS
async def test_an_emdr_session_outside_its_window_is_refused_unless_overridden(
    scheduling: httpx.AsyncClient,
):
    end = ended()
    dose_id = await given_dose(scheduling, "p1", end)
    # Past the window, and across its end (the dosing session fills the time before it).
    for start in (end + timedelta(hours=170), end + timedelta(hours=167, minutes=30)):
        refused = await scheduling.post("/Appointment", json=_emdr("p1", start))
        assert refused.status_code == 409, refused.text
        assert "emdr-outside-window" in rule_of(refused)
        assert expressions(refused) == ["Appointment.start"]
    reason = {"url": OVERRIDE, "valueString": "patient travelling; agreed with psychiatrist"}
    late = _emdr("p1", end + timedelta(hours=170), extension=[reason])
    created = await scheduling.post("/Appointment", json=late)
    assert created.status_code == 201, created.text
    stored = created.json()
    assert reason in stored["extension"]
    assert opened(stored)["dose"] == {"reference": f"MedicationAdministration/{dose_id}"}
    empty = _emdr("p1", end + timedelta(hours=172), extension=[{**reason, "valueString": " "}])
    assert (await scheduling.post("/Appointment", json=empty)).status_code == 422


@BACKENDS
async def test_the_named_dose_must_be_the_patients_own(scheduling: httpx.AsyncClient):
    end = ended()
    await given_dose(scheduling, "p1", end)
    other = await given_dose(scheduling, "p2", end)
    body = _emdr("p1", end + timedelta(hours=30), extension=[_opened_by(other, 30)])
    refused = await scheduling.post("/Appointment", json=body)
    assert refused.status_code == 422, refused.text
    assert expressions(refused) == [f"Appointment.extension('{OPENED_BY}')"]


@BACKENDS
async def test_before_any_dose_an_emdr_session_of_a_course_is_refused(
    scheduling: httpx.AsyncClient,
):
    end = ended()
    await given_dose(scheduling, "p1", end)
    refused = await scheduling.post("/Appointment", json=_emdr("p1", end - timedelta(days=3)))
    assert refused.status_code == 409, refused.text
    assert "no completed dose of Patient/p1 ended before it" in rule_of(refused)
