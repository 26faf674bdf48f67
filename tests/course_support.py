"""Builders and steps of the whole-course test (test_course.py): the clinic's staff and rooms,
the intake walk-through, outcomes' measurements and one dose with its EMDR session.

Everything goes through the services' HTTP APIs; what one service learns from another comes
over the broker (the test only waits for it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx

from tests.auth_support import bearer
from tests.dosing_support import BASE, INJECTION, ROUTES, SNOMED, care_plan
from tests.enrolment_support import consent
from tests.holds_support import LOINC, UCUM, blood_pressure
from tests.kafka_support import eventually
from tests.scheduling_support import (
    PSYCHIATRIST,
    PSYCHOTHERAPIST,
    concept,
    generate,
    schedule,
    session_type,
)
from tests.screening_support import screening

HOLD_CODE = f"{BASE}/CodeSystem/dosing-safety|pre-dose-bp-hold"
HOLD_URL = f"{BASE}/StructureDefinition/dose-hold"
PER_KG = f"{BASE}/StructureDefinition/dose-per-kg"
VITAL_SIGNS = "http://terminology.hl7.org/CodeSystem/observation-category"
# iv-racemic: 40 min infusion + 2 h observation; its window from the end of the infusion.
SESSION = timedelta(minutes=160)
INFUSION = timedelta(minutes=40)
WINDOW_START, OPTIMAL_START, OPTIMAL_END, WINDOW_END = 2, 24, 72, 168
WAIT = 30  # seconds an event may take to travel (bounded waits)


def clinic_zone(client: httpx.AsyncClient) -> ZoneInfo:
    """The scheduling service's clinic time zone (its setting)."""
    return client._transport.app.state.fhir.interactions.settings.clinic_zone()  # type: ignore[attr-defined]


def utc(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def first_monday(today: date) -> date:
    """The course's first day: the next Monday after today (the whole course is ahead, as
    `$find` proposes nothing in the past)."""
    return today + timedelta(days=7 - today.weekday())


def course_days(monday: date) -> list[date]:
    """Six doses over three weeks: Monday and Thursday (72 h or more apart, 2 a week)."""
    return [monday + timedelta(days=7 * week + day) for week in range(3) for day in (0, 3)]


async def ok(response: httpx.Response, *expected: int) -> dict[str, Any]:
    """The JSON of a response with one of the `expected` statuses (200/201 by default)."""
    assert response.status_code in (expected or (200, 201)), (
        f"{response.request.method} {response.request.url}: {response.status_code} {response.text}"
    )
    return response.json()


def rule_of(response: httpx.Response) -> str:
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome", outcome
    return " ".join(issue.get("diagnostics", "") for issue in outcome["issue"])


async def entries(client: httpx.AsyncClient, path: str, **params: Any) -> list[dict[str, Any]]:
    found = await ok(await client.get(path, params=params))
    return [entry["resource"] for entry in found.get("entry", [])]


# ---- the clinic ----------------------------------------------------------------------------
@dataclass
class Clinic:
    """Scheduling's staff, room and schedules (ids)."""

    psychiatrist: str  # Practitioner/<id>
    therapist: str  # Practitioner/<id>
    therapist_role: str  # PractitionerRole/<id>
    room: str  # Location/<id>
    dosing_schedule: str  # the psychiatrist's Schedule id
    room_schedule: str
    emdr_schedule: str  # the therapist's (role's) Schedule id

    def psychiatrist_token(self) -> dict[str, str]:
        return bearer(user=self.psychiatrist)


def practitioner(family: str, given_name: str) -> dict[str, Any]:
    return {
        "resourceType": "Practitioner",
        "active": True,
        "name": [{"family": family, "given": [given_name], "prefix": ["Dr"]}],
    }


def role(practitioner_ref: str, occupation: tuple[str, str, str], *types: str) -> dict[str, Any]:
    return {
        "resourceType": "PractitionerRole",
        "active": True,
        "practitioner": {"reference": practitioner_ref},
        "code": [concept(*occupation)],
        "specialty": [session_type(t) for t in types],
    }


def room() -> dict[str, Any]:
    return {
        "resourceType": "Location",
        "status": "active",
        "name": "Infusion room 1",
        "mode": "instance",
        "physicalType": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/location-physical-type",
                    "code": "ro",
                }
            ]
        },
    }


async def created(client: httpx.AsyncClient, body: dict[str, Any], **kwargs: Any) -> str:
    response = await client.post(f"/{body['resourceType']}", json=body, **kwargs)
    return (await ok(response, 201))["id"]


async def generate_slots(
    client: httpx.AsyncClient, schedule_id: str, first: date, last: date, **inputs: Any
) -> int:
    body = generate(start=first.isoformat(), end=last.isoformat(), **inputs)
    done = await ok(await client.post(f"/Schedule/{schedule_id}/$generate-slots", json=body), 200)
    counts = {p["name"]: p["valueInteger"] for p in done["parameter"]}
    assert counts["skipped"] == 0 and counts["overlapping"] == 0, counts
    return counts["created"]


async def open_clinic(scheduling: httpx.AsyncClient, first: date, last: date) -> Clinic:
    """A psychiatrist and an EMDR therapist with their roles, an infusion room, and their
    Schedules with slots from `first` to `last` (the clinic's wall clock): dosing sessions
    of 2 h 40 min Monday to Friday from 09:00 for the psychiatrist and the room; EMDR hours
    of 60 min Monday to Friday 09:00-17:00 for the therapist."""
    psychiatrist = f"Practitioner/{await created(scheduling, practitioner('Okafor', 'Ada'))}"
    therapist = f"Practitioner/{await created(scheduling, practitioner('Lindqvist', 'Eva'))}"
    await created(scheduling, role(psychiatrist, PSYCHIATRIST, "dosing"))
    therapist_role = (
        f"PractitionerRole/{await created(scheduling, role(therapist, PSYCHOTHERAPIST, 'emdr'))}"
    )
    location = f"Location/{await created(scheduling, room())}"
    dosing_schedule = await created(scheduling, schedule(psychiatrist, "dosing"))
    room_schedule = await created(scheduling, schedule(location, "dosing"))
    emdr_schedule = await created(scheduling, schedule(therapist_role, "emdr"))
    minutes = int(SESSION.total_seconds() // 60)
    days = (last - first).days + 1
    for schedule_id in (dosing_schedule, room_schedule):
        made = await generate_slots(
            scheduling, schedule_id, first, last, slotMinutes=minutes, dayEnd="17:00:00"
        )
        assert made == 3 * len([d for d in range(days) if (first + timedelta(d)).weekday() < 5])
    made = await generate_slots(scheduling, emdr_schedule, first, last, slotMinutes=60)
    assert made == 8 * len([d for d in range(days) if (first + timedelta(d)).weekday() < 5])
    return Clinic(
        psychiatrist,
        therapist,
        therapist_role,
        location,
        dosing_schedule,
        room_schedule,
        emdr_schedule,
    )


# ---- intake ----------------------------------------------------------------------------------
@dataclass
class Enrolled:
    """The patient as intake enrolled them."""

    patient: str  # the id
    referral: str  # ServiceRequest id
    episode: str  # EpisodeOfCare id
    consent: str  # Consent id
    screening: str  # QuestionnaireResponse id
    screened_kg: float = 68


async def enrol_at_intake(intake: httpx.AsyncClient, psychiatrist: str) -> Enrolled:
    """The README's intake walk-through: practice, patient, referral, a screening with PHQ-9,
    PCL-5 and body weight whose blood pressure (152/94) puts the episode on hold, the
    psychiatrist's `$review` (eligible), the treatment Consent: the episode is active."""
    practice = {
        "resourceType": "Organization",
        "active": True,
        "name": "North Psychiatry Practice",
    }
    practice_id = await created(intake, practice)
    person = {
        "resourceType": "Patient",
        "name": [{"family": "Rivera", "given": ["Sam"]}],
        "gender": "female",
        "birthDate": "1986-04-12",
        "managingOrganization": {"reference": f"Organization/{practice_id}"},
    }
    pid = await created(intake, person)
    referral = {
        "resourceType": "ServiceRequest",
        "status": "active",
        "intent": "order",
        "subject": {"reference": f"Patient/{pid}"},
        "requester": {"reference": f"Organization/{practice_id}"},
        "reasonCode": [{"coding": [{"system": SNOMED, "code": "47505003"}]}],
    }
    referral_id = await created(intake, referral)
    (episode,) = await entries(intake, "/EpisodeOfCare", patient=f"Patient/{pid}")
    assert episode["status"] == "planned"
    answers = screening(pid, bp=(152, 94), weight=68, phq9=(2,) * 9, pcl5=(3,) * 20)
    screening_id = await created(intake, answers)
    episode = await ok(await intake.get(f"/EpisodeOfCare/{episode['id']}"))
    assert episode["status"] == "onhold"  # blood pressure 152/94 at screening: review
    review = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "decision", "valueCode": "eligible"},
            {"name": "reason", "valueString": "Repeat BP 132/84; controlled on amlodipine"},
        ],
    }
    reviewed = await intake.post(
        f"/EpisodeOfCare/{episode['id']}/$review", json=review, headers=bearer(user=psychiatrist)
    )
    assert (await ok(reviewed))["status"] == "waitlist"
    consent_id = await created(intake, consent(pid))
    episode = await ok(await intake.get(f"/EpisodeOfCare/{episode['id']}"))
    assert episode["status"] == "active"
    return Enrolled(pid, referral_id, episode["id"], consent_id, screening_id)


async def replicated(client: httpx.AsyncClient, path: str, check=lambda r: True) -> dict:
    """Wait until the service holds the resource at `path` (and `check` holds of it)."""

    async def there() -> dict[str, Any] | None:
        response = await client.get(path)
        if response.status_code == 200 and check(response.json()):
            return response.json()
        return None

    return await eventually(there, timeout=WAIT, what=f"{path} replicated")


# ---- outcomes ----------------------------------------------------------------------------------
def body_weight(patient_id: str, kg: float, at: datetime) -> dict[str, Any]:
    """A measured body weight (LOINC 29463-7)."""
    return {
        "resourceType": "Observation",
        "status": "final",
        "category": [{"coding": [{"system": VITAL_SIGNS, "code": "vital-signs"}]}],
        "code": {"coding": [{"system": LOINC, "code": "29463-7", "display": "Body weight"}]},
        "subject": {"reference": f"Patient/{patient_id}"},
        "effectiveDateTime": utc(at),
        "valueQuantity": {"value": kg, "unit": "kg", "system": UCUM, "code": "kg"},
    }


def pre_dose_bp(patient_id: str, systolic: float, diastolic: float, at: datetime) -> dict:
    body = blood_pressure(patient_id, systolic, diastolic, utc(at))
    return {**body, "category": [{"coding": [{"system": VITAL_SIGNS, "code": "vital-signs"}]}]}


# ---- one dose --------------------------------------------------------------------------------
@dataclass
class Dose:
    """One dose of the course as the test booked and gave it."""

    number: int
    day: date
    session: dict[str, Any] = field(default_factory=dict)  # the dosing Appointment
    administration: dict[str, Any] = field(default_factory=dict)
    window: dict[str, datetime] = field(default_factory=dict)
    emdr: dict[str, Any] = field(default_factory=dict)  # the booked EMDR Appointment


async def free_slot(client: httpx.AsyncClient, schedule_id: str, start: datetime) -> dict:
    """The schedule's free slot starting at `start`, found by search."""
    found = await entries(
        client,
        "/Slot",
        schedule=f"Schedule/{schedule_id}",
        status="free",
        start=[f"ge{utc(start)}", f"lt{utc(start + timedelta(minutes=1))}"],
    )
    assert len(found) == 1, found
    return found[0]


def dosing_appointment(
    patient: Enrolled, clinic: Clinic, slots: list[dict[str, Any]]
) -> dict[str, Any]:
    """The dosing session: patient, psychiatrist and room, in their slots."""
    return {
        "resourceType": "Appointment",
        "status": "booked",
        "serviceType": [session_type("dosing")],
        "description": "IV racemic ketamine infusion",
        "start": slots[0]["start"],
        "end": slots[0]["end"],
        "slot": [{"reference": f"Slot/{s['id']}"} for s in slots],
        "basedOn": [{"reference": f"ServiceRequest/{patient.referral}"}],
        "participant": [
            {"actor": {"reference": f"Patient/{patient.patient}"}, "status": "accepted"},
            {"actor": {"reference": clinic.psychiatrist}, "status": "accepted"},
            {"actor": {"reference": clinic.room}, "status": "accepted"},
        ],
    }


def administration(
    patient: Enrolled, clinic: Clinic, session: dict, encounter: str | None, mg: float
) -> dict[str, Any]:
    """The infusion given in `session`: from 20 minutes after the session starts, 40 min."""
    began = parse(session["start"]) + timedelta(minutes=20)
    supporting = [{"reference": f"Appointment/{session['id']}"}]
    if encounter is not None:
        supporting.append({"reference": f"Encounter/{encounter}"})
    return {
        "resourceType": "MedicationAdministration",
        "status": "completed",
        "medicationCodeableConcept": {"coding": [INJECTION]},
        "subject": {"reference": f"Patient/{patient.patient}"},
        "context": {"reference": f"EpisodeOfCare/{patient.episode}"},
        "effectivePeriod": {"start": utc(began), "end": utc(began + INFUSION)},
        "performer": [{"actor": {"reference": clinic.psychiatrist}}],
        "supportingInformation": supporting,
        "dosage": {
            "route": {"coding": [{"system": SNOMED, "code": ROUTES["iv"]}]},
            "dose": {"value": mg, "unit": "mg", "system": UCUM, "code": "mg"},
        },
    }


def course_plan(patient: Enrolled, clinic: Clinic) -> dict[str, Any]:
    body = care_plan(patient.patient)
    return {
        **body,
        "author": {"reference": clinic.psychiatrist},
        "period": {"start": utc(datetime.now(UTC).replace(microsecond=0))},
        "description": "Six IV racemic ketamine infusions, 0.5 mg/kg, Mon/Wed/Fri for three weeks",
    }


def find_emdr(patient: Enrolled, count: int) -> dict[str, Any]:
    return {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "patient", "valueReference": {"reference": f"Patient/{patient.patient}"}},
            {"name": "service-type", "valueCodeableConcept": session_type("emdr")},
            {"name": "_count", "valueInteger": count},
        ],
    }


def window_values(parameters: dict[str, Any]) -> dict[str, Any]:
    values = {
        p["name"]: p.get("valueDateTime", p.get("valueString")) for p in parameters["parameter"]
    }
    return {k: (v if k == "protocol" else parse(v)) for k, v in values.items()}
