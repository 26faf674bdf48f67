"""The patients of `bench.scheduling`: each enrolled on iv-racemic with a dose that ended
three hours ago (an open window); and the `$book` bodies of the contention cells."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from bench.scheduling_data import BASE, PRACTITIONERS, ROOMS, fhir
from services.scheduling.dosing.extensions import protocol_prefix
from services.scheduling.dosing.protocol import dosing_protocols
from services.scheduling.session_types import session_type_system
from shared.events.replica import ReplicaWriter

PATIENTS = int(os.environ.get("BENCH_SCHEDULING_WRITES", "160"))
JSON = {"Content-Type": "application/fhir+json"}
UCUM = "http://unitsofmeasure.org"
EMDR = {"coding": [{"system": session_type_system(BASE), "code": "emdr"}]}


def _replicate(client: httpx.AsyncClient, res_type: str, res_id: str, body: dict) -> None:
    context = client._transport.app.state.fhir  # type: ignore[attr-defined]
    with context.database.write() as session:
        ReplicaWriter(context.store).put_version(
            session, res_type, res_id, 1, {**body, "id": res_id}
        )


async def _send(client: httpx.AsyncClient, method: str, path: str, body: dict) -> dict:
    response = await client.request(method, path, json=body, headers=JSON)
    if response.status_code not in (200, 201):
        raise RuntimeError(f"{method} {path}: {response.status_code} {response.text[:300]}")
    return response.json()


async def _dosed(client: httpx.AsyncClient, n: int, ended: datetime) -> None:
    patient = f"Patient/b{n}"
    _replicate(
        client,
        "EpisodeOfCare",
        f"ep-b{n}",
        {"resourceType": "EpisodeOfCare", "status": "active", "patient": {"reference": patient}},
    )
    _replicate(
        client,
        "Observation",
        f"kg-b{n}",
        {
            "resourceType": "Observation",
            "status": "final",
            "subject": {"reference": patient},
            "code": {"coding": [{"system": "http://loinc.org", "code": "29463-7"}]},
            "effectiveDateTime": fhir(ended - timedelta(days=1)),
            "valueQuantity": {"value": 70, "unit": "kg", "system": UCUM, "code": "kg"},
        },
    )
    version = dosing_protocols().version
    await _send(
        client,
        "POST",
        "/CarePlan",
        {
            "resourceType": "CarePlan",
            "status": "active",
            "intent": "plan",
            "instantiatesCanonical": [f"{protocol_prefix(BASE)}iv-racemic|{version}"],
            "subject": {"reference": patient},
        },
    )
    start = ended - timedelta(minutes=40)
    await _send(
        client,
        "PUT",
        f"/Appointment/dose-b{n}",
        {
            "resourceType": "Appointment",
            "id": f"dose-b{n}",
            "status": "booked",
            "serviceType": [{"coding": [{"system": session_type_system(BASE), "code": "dosing"}]}],
            "start": fhir(start),
            "end": fhir(ended + timedelta(hours=2)),
            "participant": [
                {"actor": {"reference": patient}, "status": "accepted"},
                {"actor": {"reference": f"Practitioner/doser-{n}"}, "status": "accepted"},
            ],
        },
    )
    await _send(
        client,
        "POST",
        "/MedicationAdministration",
        {
            "resourceType": "MedicationAdministration",
            "status": "completed",
            "medicationCodeableConcept": {
                "coding": [
                    {"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "238083"}
                ]
            },
            "subject": {"reference": patient},
            "effectivePeriod": {"start": fhir(start), "end": fhir(ended)},
            "supportingInformation": [{"reference": f"Appointment/dose-b{n}"}],
            "dosage": {
                "route": {"coding": [{"system": "http://snomed.info/sct", "code": "47625008"}]},
                "dose": {"value": 35, "unit": "mg", "system": UCUM, "code": "mg"},
            },
        },
    )


def find_body(n: int, **extra: Any) -> dict[str, Any]:
    parameter = [
        {"name": "patient", "valueReference": {"reference": f"Patient/b{n}"}},
        {"name": "service-type", "valueCodeableConcept": EMDR},
        *({"name": k, "valueDateTime": v} for k, v in extra.items()),
    ]
    return {"resourceType": "Parameters", "parameter": parameter}


async def open_windows(client: httpx.AsyncClient) -> list[dict[str, Any]]:
    """Every patient dosed three hours ago; one `$find` body each."""
    ended = datetime.now(UTC).replace(tzinfo=None, minute=0, second=0, microsecond=0)
    ended -= timedelta(hours=3)
    for n in range(PATIENTS):
        await _dosed(client, n, ended)
    return [find_body(n) for n in range(PATIENTS)]


def _booking(n: int, practitioner: int, room: int, day: int, half: int, start: str) -> dict:
    moment = datetime.strptime(start, "%Y-%m-%dT%H:%M:%SZ") + timedelta(minutes=30 * half)
    return {
        "resourceType": "Parameters",
        "parameter": [
            {
                "name": "appointment",
                "resource": {
                    "resourceType": "Appointment",
                    "status": "proposed",
                    "serviceType": [EMDR],
                    "start": fhir(moment),
                    "end": fhir(moment + timedelta(minutes=30)),
                    "slot": [
                        {"reference": f"Slot/slot-{practitioner:02d}-{day:03d}-{half:02d}"},
                        {"reference": f"Slot/slot-{PRACTITIONERS + room:02d}-{day:03d}-{half:02d}"},
                    ],
                    "participant": [
                        {"actor": {"reference": a}, "status": "needs-action"}
                        for a in (
                            f"Patient/b{n}",
                            f"Practitioner/dr-{practitioner:02d}",
                            f"Location/room-{room:02d}",
                        )
                    ],
                },
            }
        ],
    }


async def proposal_sets(client: httpx.AsyncClient, count: int) -> tuple[list, list]:
    """(`count` bookings of one slot by different patients, `count` of distinct slots): a
    day's half-hours from the first working day after the first optimal proposal."""
    response = await client.post("/Appointment/$find", json=find_body(0), headers=JSON)
    first = response.json()["entry"][0]["resource"]
    _, _, day, _ = first["slot"][0]["reference"].split("-")
    later = datetime.strptime(first["start"][:10], "%Y-%m-%d") + timedelta(days=1)
    while later.weekday() >= 5:
        later += timedelta(days=1)
    day_index = int(day) + (later - datetime.strptime(first["start"][:10], "%Y-%m-%d")).days
    opening = fhir(later.replace(hour=8))
    one = [_booking(n, 0, 0, day_index, 17, opening) for n in range(count)]  # not in `many`
    many = [
        _booking(n, n % PRACTITIONERS, n % ROOMS, day_index, n // ROOMS, opening)
        for n in range(count)
    ]
    return one, many
