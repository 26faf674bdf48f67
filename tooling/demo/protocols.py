"""The dosing protocols the demo's courses follow (scheduling's dosing-protocols.json names
them; the numbers here stay inside each protocol's dose range, interval and cadence)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from tooling.demo.codes import RXNORM, SNOMED


@dataclass(frozen=True)
class Course:
    """How the demo gives one protocol: route, medicine, dose, timing and dosing days."""

    protocol: str  # the PlanDefinition id in scheduling's protocol file
    display: str
    route: tuple[str, str]  # SNOMED code, display
    medication: tuple[str | None, str, str]  # system (None: the programme's own), code, text
    session_minutes: int  # administration + 2 h post-dose observation
    starts_after_minutes: int  # from the session's start to the administration
    administration_minutes: int  # 0: a single instant (effectiveDateTime)
    days: tuple[int, ...]  # dosing days from the course's first day
    per_kg: float | None  # mg/kg (None: a fixed dose)
    fixed_mg: tuple[float, ...] = ()  # the fixed doses a patient may be given
    max_mg: float | None = None
    in_session_emdr: bool = False  # the EMDR session runs inside the dosing session

    def medication_concept(self, base: str) -> dict[str, Any]:
        system, code, text = self.medication
        system = system or f"{base}/CodeSystem/compounded-medication"
        return {"coding": [{"system": system, "code": code}], "text": text}

    def route_concept(self) -> dict[str, Any]:
        code, display = self.route
        return {"coding": [{"system": SNOMED, "code": code, "display": display}]}


INJECTION = (RXNORM, "238083", "ketamine injectable solution")
SUBLINGUAL = (None, "racemic-ketamine-sublingual", "racemic ketamine sublingual tablet")
WEEKLY = (0, 7, 14, 21, 28, 35)

COURSES: dict[str, Course] = {
    course.protocol: course
    for course in (
        Course(
            "iv-racemic",
            "Six IV racemic ketamine infusions, 0.5 mg/kg, twice a week for three weeks",
            ("47625008", "Intravenous route"),
            INJECTION,
            session_minutes=160,
            starts_after_minutes=20,
            administration_minutes=40,
            days=(0, 3, 7, 10, 14, 17),
            per_kg=0.5,
        ),
        Course(
            "im-racemic",
            "Six weekly intramuscular racemic ketamine injections, 0.5 mg/kg",
            ("78421000", "Intramuscular route"),
            INJECTION,
            session_minutes=120,
            starts_after_minutes=15,
            administration_minutes=0,
            days=WEEKLY,
            per_kg=0.5,
            max_mg=60,
        ),
        Course(
            "sublingual-racemic",
            "Six weekly sublingual racemic ketamine doses",
            ("37839007", "Sublingual route"),
            SUBLINGUAL,
            session_minutes=120,
            starts_after_minutes=10,
            administration_minutes=0,
            days=WEEKLY,
            per_kg=None,
            fixed_mg=(100, 150, 200),
        ),
        Course(
            "sublingual-emdr-in-session",
            "Six weekly sublingual ketamine doses, each during an EMDR session",
            ("37839007", "Sublingual route"),
            SUBLINGUAL,
            session_minutes=120,
            starts_after_minutes=10,
            administration_minutes=0,
            days=WEEKLY,
            per_kg=None,
            fixed_mg=(37.5, 50, 75),
            in_session_emdr=True,
        ),
        Course(
            "intranasal-esketamine",
            "Intranasal esketamine: twice weekly in weeks 1-4, weekly in weeks 5-8",
            ("46713006", "Nasal route"),
            (RXNORM, "2201625", "esketamine Nasal Spray [Spravato]"),
            session_minutes=130,
            starts_after_minutes=10,
            administration_minutes=10,
            days=(0, 3, 7, 10, 14, 17, 21, 24, 28, 35, 42, 49),
            per_kg=None,
            fixed_mg=(56, 84),
        ),
    )
}
# How often each protocol is chosen for a course.
MIX = {
    "iv-racemic": 0.35,
    "intranasal-esketamine": 0.2,
    "im-racemic": 0.15,
    "sublingual-racemic": 0.15,
    "sublingual-emdr-in-session": 0.15,
}


def dose_mg(course: Course, kg: float, choice: float) -> float:
    """The dose for a patient of `kg` (`choice` in [0, 1) picks among fixed doses)."""
    if course.per_kg is not None:
        mg = float(math.ceil(course.per_kg * kg))  # never under the mg/kg
        return min(mg, course.max_mg) if course.max_mg is not None else mg
    return course.fixed_mg[int(choice * len(course.fixed_mg))]
