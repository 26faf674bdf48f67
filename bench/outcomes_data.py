"""A seeded synthetic programme for the outcomes benchmark: patients with courses of doses,
EMDR sessions at varied offsets after them, research consents, and score trajectories.

Every patient gets a Patient replica (one of PRACTICES practices), six completed doses of one
protocol (the plasticity window stamped as scheduling stamps it), one or two EMDR sessions per
dose with their Encounters, baseline scores before the first dose, SUDS and VOC at the start and
end of each session, a CADSS after each dose, and follow-up PHQ-9, GAD-7, PCL-5 and MADRS scores
that fill the patient's share of the Observations. The same seed gives the same programme.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from services.outcomes.app import DEFAULT_CANONICAL_BASE

BASE = DEFAULT_CANONICAL_BASE
LOINC = "http://loinc.org"
LOCAL = f"{BASE}/CodeSystem/outcome-measure"
SNOMED = "http://snomed.info/sct"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
SURVEY = {
    "coding": [
        {"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "survey"}
    ]
}
PRACTICES = 20
FIRST_DAY = datetime(2024, 1, 1)
DOSES = 6
# (protocol id, SNOMED route, medication coding, share of the courses)
PROTOCOLS = (
    ("iv-racemic", "47625008", (RXNORM, "238083"), 4),
    ("im-racemic", "78421000", (RXNORM, "238083"), 2),
    (
        "sublingual-racemic",
        "37839007",
        (f"{BASE}/CodeSystem/compounded-medication", "racemic-ketamine-sublingual"),
        2,
    ),
    ("intranasal-esketamine", "46713006", (RXNORM, "2201625"), 2),
)
PROTOCOL_VERSION = "1.0.0"
# EMDR session offsets after a dose ends, in hours: (from, to, weight); the optimal 24-72 h
# is the most common, as the clinic books it.
OFFSETS = ((0.5, 2, 1), (2, 24, 2), (24, 72, 5), (72, 168, 2), (168, 240, 1))
# Window hours after the end of a dose (the dosing protocols' defaults).
WINDOW = {"windowStart": 2, "optimalStart": 24, "optimalEnd": 72, "windowEnd": 168}


@dataclass(frozen=True)
class Instrument:
    """A followed-up score: its code, range and where a referred patient's baseline lies."""

    key: str
    system: str
    code: str
    top: int
    baseline: tuple[int, int]


FOLLOWED = (
    Instrument("phq9-total", LOINC, "44261-6", 27, (12, 24)),
    Instrument("gad7-total", LOINC, "70274-6", 21, (8, 19)),
    Instrument("pcl5-total", LOINC, "101698-9", 80, (30, 65)),
    Instrument("madrs-total", LOCAL, "madrs-total", 60, (22, 42)),
)

Entry = tuple[str, str, dict[str, Any]]  # (resource type, id, resource)


def fhir_time(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def patient_id(number: int) -> str:
    return f"pat-{number:05d}"


def practice_of(number: int) -> str:
    return f"practice-{number % PRACTICES:02d}"


def shares(total: int, parts: int) -> list[int]:
    """`total` split over `parts` as evenly as integers allow."""
    return [total // parts + (1 if n < total % parts else 0) for n in range(parts)]


def programme(patients: int, observations: int, *, seed: int = 11) -> Iterator[Entry]:
    """Every resource of the programme, patient by patient; exactly `observations` scores."""
    rng = random.Random(seed)
    for number, budget in enumerate(shares(observations, patients)):
        for res_type, res_id, resource in _patient(rng, number, budget):
            # Another service's version carries its id; outcomes' own get theirs on create.
            yield (
                res_type,
                res_id,
                resource
                if res_type == "Observation"
                else {
                    "id": res_id,
                    **resource,
                },
            )


def _patient(rng: random.Random, number: int, budget: int) -> Iterator[Entry]:
    pid = patient_id(number)
    first = FIRST_DAY + timedelta(days=rng.randrange(540), hours=rng.choice((9, 11, 14)))
    yield "Patient", pid, _patient_body(rng, number, first)
    if number % 3 == 0:
        yield "Consent", f"consent-{pid}", _consent(pid, first, active=number % 15 != 0)
    protocol, route, medication, _ = rng.choices(PROTOCOLS, weights=[p[3] for p in PROTOCOLS])[0]
    responder = rng.random() < 0.55
    improvement = rng.uniform(0.5, 0.85) if responder else rng.uniform(0.0, 0.4)
    tau = rng.uniform(10, 40)  # days to two thirds of the eventual improvement
    baselines = {i.key: rng.randint(*i.baseline) for i in FOLLOWED}
    session_scores: list[Entry] = []
    day = first
    for d in range(DOSES):
        dose_id = f"dose-{pid}-{d}"
        ended = day + timedelta(minutes=40)
        yield (
            "MedicationAdministration",
            dose_id,
            _dose(pid, day, ended, protocol, route, medication),
        )
        session_scores.append(
            _score(
                f"{dose_id}-cadss",
                pid,
                LOCAL,
                "cadss-total",
                rng.randint(5, 40),
                ended + timedelta(minutes=20),
            )
        )
        gap = timedelta(days=rng.choice((3, 4)), hours=rng.choice((-2, 0, 0, 2)))
        # Before the next dose: only the course's last dose has sessions a week or more later.
        latest = 240 if d == DOSES - 1 else gap.total_seconds() / 3600 - 2
        for s in range(1 if rng.random() < 0.5 else 2):
            low, high, _ = rng.choices(OFFSETS, weights=[o[2] for o in OFFSETS])[0]
            high = min(high, latest)
            offset = round(rng.uniform(min(low, high), high), 1)
            start = ended + timedelta(hours=offset)
            appointment_id = f"emdr-{pid}-{d}-{s}"
            status = "fulfilled" if rng.random() < 0.92 else rng.choice(("cancelled", "noshow"))
            yield (
                "Appointment",
                appointment_id,
                _session(pid, appointment_id, start, status, dose_id, offset),
            )
            if status != "fulfilled":
                continue
            encounter_id = f"enc-{pid}-{d}-{s}"
            yield "Encounter", encounter_id, _encounter(pid, appointment_id, start)
            session_scores += _session_scores(rng, pid, encounter_id, start, offset)
        day += gap
    yield from _scores(rng, pid, first, budget, baselines, improvement, tau, session_scores)


def _scores(
    rng: random.Random,
    pid: str,
    first: datetime,
    budget: int,
    baselines: dict[str, int],
    improvement: float,
    tau: float,
    session_scores: list[Entry],
) -> Iterator[Entry]:
    """Baselines before the first dose, the sessions' scores, then follow-ups to the budget."""
    base = [
        _score(
            f"obs-{pid}-b{n}",
            pid,
            i.system,
            i.code,
            baselines[i.key],
            first - timedelta(days=rng.randint(1, 14), hours=rng.randint(0, 6)),
        )
        for n, i in enumerate(FOLLOWED)
    ]
    if budget <= len(base):
        yield from base[:budget]
        return
    # Keep two follow-ups of each instrument however small the budget: a course with no
    # later score has no change to report.
    room = max(0, budget - len(base) - 2 * len(FOLLOWED))
    session_scores = session_scores[:room]
    yield from base
    yield from session_scores
    followed = budget - len(base) - len(session_scores)
    for instrument, count in zip(FOLLOWED, shares(followed, len(FOLLOWED)), strict=True):
        gap = 7 if count > 20 else 14
        for n in range(count):
            when = first + timedelta(days=3 + gap * n + rng.uniform(0, 2))
            days = (when - first).total_seconds() / 86400
            eased = improvement * (1 - math.exp(-days / tau))
            mean = baselines[instrument.key] * (1 - eased)
            value = round(rng.gauss(mean, max(1.0, instrument.top * 0.04)))
            value = min(instrument.top, max(0, value))
            yield _score(
                f"obs-{pid}-{instrument.key}-{n}",
                pid,
                instrument.system,
                instrument.code,
                value,
                when,
            )


def _session_scores(
    rng: random.Random, pid: str, encounter_id: str, start: datetime, offset: float
) -> list[Entry]:
    """SUDS and VOC at the start and end of one EMDR session; sessions in the optimal window
    reprocess further (the effect the window evidence should find)."""
    suds_start = rng.randint(6, 10)
    relief = 0.75 if 24 <= offset < 72 else 0.55 if 2 <= offset < 168 else 0.4
    suds_end = max(0, min(10, round(suds_start * (1 - relief) + rng.gauss(0, 1))))
    voc_start = rng.randint(1, 4)
    voc_end = min(7, voc_start + rng.randint(1, 4))
    end = start + timedelta(minutes=55)
    at = {"encounter": {"reference": f"Encounter/{encounter_id}"}}
    key = encounter_id.removeprefix("enc-")
    return [
        _score(f"obs-{key}-suds0", pid, LOCAL, "suds", suds_start, start, **at),
        _score(f"obs-{key}-voc0", pid, LOCAL, "voc", voc_start, start, **at),
        _score(f"obs-{key}-suds1", pid, LOCAL, "suds", suds_end, end, **at),
        _score(f"obs-{key}-voc1", pid, LOCAL, "voc", voc_end, end, **at),
    ]


def _score(
    obs_id: str, pid: str, system: str, code: str, value: int, when: datetime, **extra: Any
) -> Entry:
    return (
        "Observation",
        obs_id,
        {
            "resourceType": "Observation",
            "status": "final",
            "category": [SURVEY],
            "code": {"coding": [{"system": system, "code": code}]},
            "subject": {"reference": f"Patient/{pid}"},
            "effectiveDateTime": fhir_time(when),
            "valueInteger": value,
            **extra,
        },
    )


def _replica(resource: dict[str, Any], when: datetime) -> dict[str, Any]:
    """The owner's version 1, as its event carries it (programme() adds the id)."""
    return {**resource, "meta": {"versionId": "1", "lastUpdated": fhir_time(when)}}


def _patient_body(rng: random.Random, number: int, first: datetime) -> dict[str, Any]:
    return _replica(
        {
            "resourceType": "Patient",
            "name": [{"family": f"Family{number:05d}", "given": [rng.choice(GIVEN)]}],
            "gender": rng.choice(("female", "male")),
            "birthDate": f"{rng.randint(1950, 2004)}-{rng.randint(1, 12):02d}-15",
            "managingOrganization": {"reference": f"Organization/{practice_of(number)}"},
        },
        first - timedelta(days=30),
    )


GIVEN = ("Alex", "Sam", "Robin", "Kim", "Jo", "Charlie", "Maria", "Noor", "Ines", "Tom")


def _consent(pid: str, first: datetime, *, active: bool) -> dict[str, Any]:
    return _replica(
        {
            "resourceType": "Consent",
            "status": "active" if active else "inactive",
            "scope": {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/consentscope",
                        "code": "research",
                    }
                ]
            },
            "category": [{"coding": [{"system": LOINC, "code": "59284-0"}]}],
            "patient": {"reference": f"Patient/{pid}"},
            "provision": {
                "type": "permit",
                "period": {"start": (first - timedelta(days=20)).strftime("%Y-%m-%d")},
            },
        },
        first - timedelta(days=20),
    )


def _dose(
    pid: str,
    start: datetime,
    ended: datetime,
    protocol: str,
    route: str,
    medication: tuple[str, str],
) -> dict[str, Any]:
    window = [
        {"url": name, "valueDateTime": fhir_time(ended + timedelta(hours=hours))}
        for name, hours in WINDOW.items()
    ]
    window.append({"url": "protocol", "valueString": f"{protocol}|{PROTOCOL_VERSION}"})
    return _replica(
        {
            "resourceType": "MedicationAdministration",
            "extension": [
                {"url": f"{BASE}/StructureDefinition/plasticity-window", "extension": window}
            ],
            "status": "completed",
            "medicationCodeableConcept": {
                "coding": [{"system": medication[0], "code": medication[1]}]
            },
            "subject": {"reference": f"Patient/{pid}"},
            "effectivePeriod": {"start": fhir_time(start), "end": fhir_time(ended)},
            "dosage": {"route": {"coding": [{"system": SNOMED, "code": route}]}},
        },
        ended,
    )


def _session(
    pid: str, appointment_id: str, start: datetime, status: str, dose_id: str, offset: float
) -> dict[str, Any]:
    return _replica(
        {
            "resourceType": "Appointment",
            "extension": [
                {
                    "url": f"{BASE}/StructureDefinition/opened-by-dose",
                    "extension": [
                        {
                            "url": "dose",
                            "valueReference": {"reference": f"MedicationAdministration/{dose_id}"},
                        },
                        {"url": "offset-hours", "valueDecimal": offset},
                    ],
                }
            ],
            "status": status,
            "serviceType": [
                {"coding": [{"system": f"{BASE}/CodeSystem/session-type", "code": "emdr"}]}
            ],
            "start": fhir_time(start),
            "end": fhir_time(start + timedelta(hours=1)),
            "participant": [
                {"actor": {"reference": f"Patient/{pid}"}, "status": "accepted"},
                {"actor": {"reference": "Practitioner/therapist-1"}, "status": "accepted"},
            ],
        },
        start - timedelta(days=1),
    )


def _encounter(pid: str, appointment_id: str, start: datetime) -> dict[str, Any]:
    return _replica(
        {
            "resourceType": "Encounter",
            "status": "finished",
            "class": {
                "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                "code": "AMB",
            },
            "subject": {"reference": f"Patient/{pid}"},
            "appointment": [{"reference": f"Appointment/{appointment_id}"}],
            "period": {
                "start": fhir_time(start),
                "end": fhir_time(start + timedelta(hours=1)),
            },
        },
        start + timedelta(hours=1),
    )
