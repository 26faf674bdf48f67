"""Builders for the outcome summary and export tests: a patient's scores, doses and sessions."""

from __future__ import annotations

from typing import Any

import httpx

from shared.events.replica import ReplicaWriter
from tests.dosing_support import WINDOW, dose
from tests.measures_support import LOCAL, score
from tests.replanning_support import session
from tests.replicas import replicate

# The measures' codes as tests write them: (system, code).
CODES = {
    "phq9": ("http://loinc.org", "44261-6"),
    "gad7": ("http://loinc.org", "70274-6"),
    "pcl5": ("http://loinc.org", "101698-9"),
    "madrs": (LOCAL, "madrs-total"),
    "suds": (LOCAL, "suds"),
}


async def scored(
    client: httpx.AsyncClient, patient_id: str, measure: str, value: Any, when: str, **extra: Any
) -> str:
    """POST one score Observation; returns its id."""
    system, code = CODES[measure]
    body = score(code, value, system=system, subject=patient_id, effectiveDateTime=when, **extra)
    response = await client.post("/Observation", json=body)
    assert response.status_code == 201, response.text
    return response.json()["id"]


def dosed(
    client: httpx.AsyncClient,
    patient_id: str,
    dose_id: str,
    start: str,
    *,
    window: dict[str, str] | None = None,
) -> None:
    """Replicate a completed dose that started at `start`, with its window when given."""
    body = dose(patient_id, ended=start)
    body["effectivePeriod"] = {"start": start, "end": start}
    if window:
        subs = [{"url": name, "valueDateTime": moment} for name, moment in window.items()]
        body["extension"] = [{"url": WINDOW, "extension": subs}]
    replicate(client, "MedicationAdministration", dose_id, body)


def emdr(
    client: httpx.AsyncClient,
    patient_id: str,
    appointment_id: str,
    start: str,
    dose_id: str,
    offset_hours: float,
    status: str = "booked",
) -> None:
    """Replicate an EMDR session opened by `dose_id`, `offset_hours` after it."""
    body = session(
        patient_id, "emdr", start=start, status=status, dose=f"MedicationAdministration/{dose_id}"
    )
    (opened,) = body["extension"]
    opened["extension"][1]["valueDecimal"] = offset_hours
    replicate(client, "Appointment", appointment_id, body)


def deleted(client: httpx.AsyncClient, res_type: str, res_id: str, version: int) -> None:
    """Replicate the deletion of a resource at its owner."""
    context = client._transport.app.state.fhir  # type: ignore[attr-defined]
    with context.database.write() as session:
        assert ReplicaWriter(context.store).put_version(session, res_type, res_id, version, None)


def parts(parameter: dict[str, Any]) -> dict[str, Any]:
    """A parameter's parts by name, each as its value."""
    found = {}
    for part in parameter["part"]:
        (key,) = [k for k in part if k.startswith("value")]
        found[part["name"]] = part[key]
    return found


def measures_of(parameters: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The `measure` parameters of an `$outcomes` answer, by instrument code."""
    found = {}
    for parameter in parameters["parameter"]:
        if parameter["name"] == "measure":
            measure = parts(parameter)
            found[measure["instrument"]["code"]] = measure
    return found


def events_of(parameters: dict[str, Any]) -> list[dict[str, Any]]:
    return [parts(p) for p in parameters["parameter"] if p["name"] == "event"]
