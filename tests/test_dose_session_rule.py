"""A protocol dose belongs to a booked or arrived dosing session of its patient (issue 10)."""

from __future__ import annotations

import httpx
import pytest

from tests.dosing_support import SPRAVATO, dose
from tests.fhir_asserts import assert_outcome
from tests.holds_support import dosing_session, put_session, ready

NASAL = {"medication": SPRAVATO, "route": "nasal", "mg": 56}
SUPPORTING = "MedicationAdministration.supportingInformation"


@pytest.mark.parametrize(
    ("session", "status", "text"),
    [
        (None, 422, "names its dosing session"),
        ("nope", 422, "Appointment/nope is not an Appointment stored here"),
        ("prep-s1", 422, "is not a dosing session"),
        ("dosing-s2", 422, "is not a session of Patient/s1"),
        ("cancelled-s1", 409, "is 'cancelled'; a dose needs one of: booked, arrived, fulfilled"),
    ],
)
async def test_a_dose_outside_a_dosing_session_of_its_patient_is_refused(
    scheduling: httpx.AsyncClient, session: str | None, status: int, text: str
):
    await ready(scheduling, "s1", "s2")
    preparation = dosing_session(
        "s1", code="preparation", start="2026-03-04T09:30:00Z", end="2026-03-04T10:30:00Z"
    )
    await put_session(scheduling, "prep-s1", preparation)
    await put_session(scheduling, "cancelled-s1", dosing_session("s1", status="cancelled"))
    body = dose("s1", session=session, **NASAL)
    refused = await scheduling.post("/MedicationAdministration", json=body)
    outcome = assert_outcome(refused, status, "business-rule" if status == 422 else "conflict")
    assert outcome["diagnostics"].startswith("Dosing session rule: ")
    assert text in outcome["diagnostics"]
    assert outcome["expression"] == [SUPPORTING if session is None else f"{SUPPORTING}[0]"]


async def test_arrived_and_fulfilled_sessions_take_doses(scheduling: httpx.AsyncClient):
    await ready(scheduling, "s1")
    # Two more sessions of the course, two days apart (the protocol's minimum interval).
    for status, day in (("arrived", "04"), ("fulfilled", "06")):
        times = {"start": f"2026-03-{day}T09:30:00Z", "end": f"2026-03-{day}T12:30:00Z"}
        await put_session(scheduling, f"{status}-s1", dosing_session("s1", status=status, **times))
        body = dose("s1", session=f"{status}-s1", **NASAL)
        created = await scheduling.post("/MedicationAdministration", json=body)
        assert created.status_code == 201, created.text


async def test_other_medications_and_doses_not_given_need_no_session(
    scheduling: httpx.AsyncClient,
):
    other = {"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "26225"}
    for body in (
        dose("s9", medication=other, route=None, session=None),
        dose("s9", status="not-done", session=None, **NASAL),
    ):
        created = await scheduling.post("/MedicationAdministration", json=body)
        assert created.status_code == 201, created.text
