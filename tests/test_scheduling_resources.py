"""Scheduling's own types: practitioners, roles, rooms, schedules and encounters over REST."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.conftest import BACKENDS
from tests.factories import appointment
from tests.scheduling_support import (
    NURSE,
    PSYCHIATRIST,
    PSYCHOTHERAPIST,
    SESSION_TYPES,
    SNOMED,
    concept,
    created_id,
    schedule,
)
from tests.search_helpers import match_ids, search
from tests.test_practice_access import A, B, as_, ids, patient_of, replicate


def practitioner(family: str, identifier: str) -> dict[str, Any]:
    return {
        "resourceType": "Practitioner",
        "active": True,
        "identifier": [{"system": "http://fhir.nl/fhir/NamingSystem/big", "value": identifier}],
        "name": [{"family": family, "given": ["Anna"]}],
    }


def role(practitioner_id: str, code: tuple[str, str, str], practice: str) -> dict[str, Any]:
    return {
        "resourceType": "PractitionerRole",
        "active": True,
        "practitioner": {"reference": f"Practitioner/{practitioner_id}"},
        "organization": {"reference": f"Organization/{practice}"},
        "code": [{**concept(*code), "text": code[2].lower()}],
    }


def room(name: str, practice: str) -> dict[str, Any]:
    return {
        "resourceType": "Location",
        "status": "active",
        "name": name,
        "mode": "instance",
        "type": [
            concept("http://terminology.hl7.org/CodeSystem/v3-RoleCode", "PSI", "Psychiatry clinic")
        ],
        "physicalType": concept(
            "http://terminology.hl7.org/CodeSystem/location-physical-type", "ro", "Room"
        ),
        "managingOrganization": {"reference": f"Organization/{practice}"},
    }


def encounter(patient_id: str, appointment_id: str, status: str = "finished") -> dict[str, Any]:
    return {
        "resourceType": "Encounter",
        "status": status,
        "class": {
            "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
            "code": "AMB",
            "display": "ambulatory",
        },
        "type": [concept(SESSION_TYPES, "emdr")],
        "subject": {"reference": f"Patient/{patient_id}"},
        "appointment": [{"reference": f"Appointment/{appointment_id}"}],
        "period": {"start": "2026-01-05T09:00:00+01:00", "end": "2026-01-05T10:00:00+01:00"},
    }


async def found(client: httpx.AsyncClient, path: str, params: Any) -> list[str]:
    return sorted(match_ids(await search(client, path, params)))


@BACKENDS
async def test_staff_and_rooms_are_searchable(scheduling: httpx.AsyncClient):
    anna = await created_id(scheduling, practitioner("Jansen", "111"))
    bram = await created_id(scheduling, practitioner("de Vries", "222"))
    psychiatrist = await created_id(scheduling, role(anna, PSYCHIATRIST, "a"))
    therapist = await created_id(scheduling, role(bram, PSYCHOTHERAPIST, "a"))
    nurse = await created_id(scheduling, role(bram, NURSE, "b"))
    assert await found(scheduling, "/Practitioner", {"name": "jans"}) == [anna]
    assert await found(scheduling, "/Practitioner", {"identifier": "222"}) == [bram]
    assert await found(scheduling, "/Practitioner", {"active": "true"}) == sorted([anna, bram])
    by_role = await found(scheduling, "/PractitionerRole", {"role": f"{SNOMED}|80584001"})
    assert by_role == [psychiatrist]
    at_a = await found(scheduling, "/PractitionerRole", {"organization": "Organization/a"})
    assert at_a == sorted([psychiatrist, therapist])
    of_bram = await found(scheduling, "/PractitionerRole", {"practitioner": bram, "active": "true"})
    assert of_bram == sorted([therapist, nurse])
    dosing_room = await created_id(scheduling, room("Dosing room 1", "a"))
    await created_id(scheduling, room("EMDR room", "b"))
    assert await found(scheduling, "/Location", {"name": "dosing"}) == [dosing_room]
    params = {"organization": "Organization/a", "status": "active", "type": "PSI"}
    assert await found(scheduling, "/Location", params) == [dosing_room]


@BACKENDS
async def test_schedules_are_searchable_by_actor_service_type_and_date(
    scheduling: httpx.AsyncClient,
):
    horizon = {"start": "2026-01-01", "end": "2026-06-30"}
    emdr = await created_id(
        scheduling, schedule("Practitioner/anna", "emdr", planningHorizon=horizon)
    )
    dosing = await created_id(scheduling, schedule("Location/room1", "dosing", active=False))
    by_type = await found(scheduling, "/Schedule", {"service-type": f"{SESSION_TYPES}|dosing"})
    assert by_type == [dosing]
    assert await found(scheduling, "/Schedule", {"actor": "Practitioner/anna"}) == [emdr]
    assert await found(scheduling, "/Schedule", {"active": "false"}) == [dosing]
    # Schedules whose planning horizon takes in 1 March.
    covering = [("date", "le2026-03-01"), ("date", "ge2026-03-01")]
    assert await found(scheduling, "/Schedule", covering) == [emdr]
    history = await scheduling.get(f"/Schedule/{emdr}/_history")
    assert history.status_code == 200 and history.json()["total"] == 1


@BACKENDS
async def test_encounters_are_searchable_and_patient_data(scheduling: httpx.AsyncClient):
    replicate(scheduling, "Patient", "pa", 1, patient_of("a"))
    replicate(scheduling, "Patient", "pb", 1, patient_of("b"))
    booked = await created_id(scheduling, appointment("pa"))
    seen = await created_id(scheduling, encounter("pa", booked))
    other = await created_id(scheduling, encounter("pb", booked, status="planned"))
    assert await found(scheduling, "/Encounter", {"patient": "pa"}) == [seen]
    assert await found(scheduling, "/Encounter", {"subject": "Patient/pb"}) == [other]
    assert await found(scheduling, "/Encounter", {"appointment": booked, "status": "finished"}) == [
        seen
    ]
    params = {"date": "2026-01-05", "class": "AMB", "type": f"{SESSION_TYPES}|emdr"}
    assert await found(scheduling, "/Encounter", params) == sorted([seen, other])
    # In the Patient compartment: a practice sees its own patients' encounters only ...
    assert await ids(A, scheduling, "/Encounter") == [seen]
    assert (await as_(B, scheduling.get, f"/Encounter/{seen}")).status_code == 404
    everything = await as_(A, scheduling.get, "/Patient/pa/$everything")
    assert f"Encounter/{seen}" in {
        f"{e['resource']['resourceType']}/{e['resource']['id']}" for e in everything.json()["entry"]
    }
    refused = await as_(B, scheduling.post, "/Encounter", json=encounter("pa", booked))
    assert refused.status_code == 403, refused.text


@pytest.mark.parametrize("res_type", ["Practitioner", "Location", "Schedule"])
async def test_calendars_and_staff_are_not_patient_data(scheduling: httpx.AsyncClient, res_type):
    bodies = {
        "Practitioner": practitioner("Jansen", "333"),
        "Location": room("Room 2", "b"),
        "Schedule": schedule(),
    }
    created = await created_id(scheduling, bodies[res_type])
    # Every practice's staff may look at every calendar: none of it is about a patient.
    assert await ids(A, scheduling, f"/{res_type}") == [created]
    written = await as_(A, scheduling.post, f"/{res_type}", json=bodies[res_type])
    assert written.status_code == 201, written.text
    assert (await as_(B, scheduling.get, f"/{res_type}/{created}")).status_code == 200
