"""The EMDR window rule: an EMDR session of a patient on a dosing course lies inside its
dose's plasticity window and records that dose, the offset computed by the server."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import httpx

from tests.booking_support import at, rule_of, session, start_course
from tests.conftest import BACKENDS
from tests.dosing_support import SUBLINGUAL, clinician, dose
from tests.factories import FHIR_JSON
from tests.finding_support import OPENED_BY, OVERRIDE, ended, fhir, given_dose, opened
from tests.holds_support import dosing_session, put_session, weight
from tests.replicas import replicate
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


async def _second_dose(client: httpx.AsyncClient, patient: str, end: datetime) -> str:
    """Another completed dose of the patient (its own dosing session), ending at `end`."""
    session_id = f"dosing-{patient}-2"
    await put_session(
        client,
        session_id,
        dosing_session(
            patient,
            start=fhir(end - timedelta(minutes=40)),
            end=fhir(end + timedelta(hours=2)),
            practitioner=f"Practitioner/doser-{patient}-2",
        ),
    )
    body = dose(patient, session=session_id)
    body["effectivePeriod"] = {"start": fhir(end - timedelta(minutes=40)), "end": fhir(end)}
    created = await client.post("/MedicationAdministration", json=body, headers=clinician())
    assert created.status_code == 201, created.text
    return created.json()["id"]


@BACKENDS
async def test_each_write_records_the_newest_dose_before_the_session(
    scheduling: httpx.AsyncClient,
):
    now = ended() + timedelta(hours=3)
    first = await given_dose(scheduling, "p1", now - timedelta(hours=60))
    # Booked for two hours from now: 62 h after the first dose, in its window.
    created = await scheduling.post("/Appointment", json=_emdr("p1", now + timedelta(hours=2)))
    assert created.status_code == 201, created.text
    assert opened(created.json())["dose"] == {"reference": f"MedicationAdministration/{first}"}
    # The next dose is given meanwhile, ending 3 h ago; the patient then arrives for EMDR
    # (the client sends back the stored resource, its stamp of the first dose with it).
    second = await _second_dose(scheduling, "p1", now - timedelta(hours=3))
    arrived = created.json() | {"status": "arrived"}
    stored = await scheduling.put(f"/Appointment/{arrived['id']}", json=arrived, headers=FHIR_JSON)
    assert stored.status_code == 200, stored.text
    assert opened(stored.json()) == {
        "dose": {"reference": f"MedicationAdministration/{second}"},
        "offset-hours": 5,
    }
    # Naming the first dose on purpose is refused without a reason, kept with one.
    named = stored.json() | {"extension": [_opened_by(first, 62)]}
    refused = await scheduling.put(f"/Appointment/{named['id']}", json=named, headers=FHIR_JSON)
    assert refused.status_code == 422, refused.text
    assert expressions(refused) == [f"Appointment.extension('{OPENED_BY}')"]
    reason = {"url": OVERRIDE, "valueString": "the second dose was a half dose"}
    named["extension"].append(reason)
    kept = await scheduling.put(f"/Appointment/{named['id']}", json=named, headers=FHIR_JSON)
    assert kept.status_code == 200, kept.text
    assert opened(kept.json()) == {
        "dose": {"reference": f"MedicationAdministration/{first}"},
        "offset-hours": 62,
    }


@BACKENDS
async def test_an_in_session_emdr_session_records_the_dose_given_during_it(
    scheduling: httpx.AsyncClient,
):
    await start_course(scheduling, "p1", "sublingual-emdr-in-session")
    replicate(scheduling, "Observation", "weight-p1", weight("p1", 70))
    dosing = await scheduling.post(
        "/Appointment", json=session("dosing", at(9), at(12), practitioner="Practitioner/nurse")
    )
    assert dosing.status_code == 201, dosing.text
    emdr = await scheduling.post("/Appointment", json=session("emdr", at(9, 10), at(11)))
    assert emdr.status_code == 201, emdr.text
    assert all(e["url"] != OPENED_BY for e in emdr.json().get("extension", []))
    # The dose is given during the EMDR session: it ends 10 min after the session began.
    body = dose("p1", medication=SUBLINGUAL, route="sublingual", mg=50, session=dosing.json()["id"])
    body["effectivePeriod"] = {"start": at(9), "end": at(9, 20)}
    given_ = await scheduling.post("/MedicationAdministration", json=body, headers=clinician())
    assert given_.status_code == 201, given_.text
    done = emdr.json() | {"status": "fulfilled"}
    stored = await scheduling.put(f"/Appointment/{done['id']}", json=done, headers=FHIR_JSON)
    assert stored.status_code == 200, stored.text
    assert opened(stored.json()) == {
        "dose": {"reference": f"MedicationAdministration/{given_.json()['id']}"},
        "offset-hours": -0.17,
    }
