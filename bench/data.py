"""Realistic, reproducible Observations: scores and vital signs of ~2,000 patients over 2 years."""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
FIRST_DAY = datetime(2024, 1, 1)
DAYS = 730


@dataclass(frozen=True)
class Kind:
    """One kind of measurement: its LOINC code, category, unit and plausible range."""

    code: str
    display: str
    category: str
    unit: str
    ucum: str
    low: float
    high: float
    weight: int
    decimals: int = 0


KINDS = (
    Kind("44261-6", "PHQ-9 total score", "survey", "{score}", "{score}", 0, 27, 6),
    Kind("70274-6", "GAD-7 total score", "survey", "{score}", "{score}", 0, 21, 6),
    Kind("8867-4", "Heart rate", "vital-signs", "beats/minute", "/min", 48, 130, 4),
    Kind("8480-6", "Systolic blood pressure", "vital-signs", "mmHg", "mm[Hg]", 95, 175, 3),
    Kind("8462-4", "Diastolic blood pressure", "vital-signs", "mmHg", "mm[Hg]", 55, 110, 3),
    Kind("59408-5", "Oxygen saturation by pulse oximetry", "vital-signs", "%", "%", 90, 100, 2),
    Kind("9279-1", "Respiratory rate", "vital-signs", "breaths/minute", "/min", 10, 24, 1),
    Kind("29463-7", "Body weight", "vital-signs", "kg", "kg", 45, 130, 1, 1),
)
_WEIGHTS = [k.weight for k in KINDS]


def patient_ref(number: int) -> str:
    return f"Patient/pat-{number:05d}"


@dataclass(frozen=True)
class Key:
    """What the read and search drivers need to know of one stored Observation."""

    id: str
    patient: str
    code: str


def observation(rng: random.Random, patients: int) -> dict[str, Any]:
    """One final Observation of a random patient, kind and moment of the two years."""
    kind = rng.choices(KINDS, weights=_WEIGHTS)[0]
    when = FIRST_DAY + timedelta(seconds=rng.randrange(DAYS * 86400))
    value: float = round(rng.uniform(kind.low, kind.high), kind.decimals)
    if kind.decimals == 0:
        value = int(value)
    return {
        "resourceType": "Observation",
        "identifier": [{"system": "urn:kemdr:observation", "value": str(rng.getrandbits(48))}],
        "status": "final",
        "category": [
            {"coding": [{"system": CATEGORY, "code": kind.category}], "text": kind.category}
        ],
        "code": {
            "coding": [{"system": LOINC, "code": kind.code, "display": kind.display}],
            "text": kind.display,
        },
        "subject": {"reference": patient_ref(rng.randrange(patients))},
        "effectiveDateTime": when.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "issued": (when + timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "performer": [{"reference": "Practitioner/clinician-1"}],
        "valueQuantity": {"value": value, "unit": kind.unit, "system": UCUM, "code": kind.ucum},
    }


def stored_observations(
    count: int, *, patients: int = 2000, seed: int = 1
) -> Iterator[tuple[str, dict[str, Any]]]:
    """`count` (id, Observation) pairs, the same for the same seed."""
    rng = random.Random(seed)
    for _ in range(count):
        res_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        yield res_id, observation(rng, patients)


def key_of(res_id: str, resource: dict[str, Any]) -> Key:
    return Key(res_id, resource["subject"]["reference"], resource["code"]["coding"][0]["code"])


def search_date(rng: random.Random) -> str:
    """A `ge` bound somewhere in the two years, so a search matches part of a patient's series."""
    return (FIRST_DAY + timedelta(days=rng.randrange(DAYS))).strftime("%Y-%m-%d")
