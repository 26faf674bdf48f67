"""The demo cohort as pure, seeded functions: every patient's referral, screening, review,
consents, course of doses with EMDR sessions, and scores over time, laid out from a fixed
anchor date in the past so that all of it has happened. The same seed gives the same bodies."""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from tooling.demo import clinic as place
from tooling.demo.clinic import Calendar, at, monday_on_or_after, next_weekday, utc
from tooling.demo.codes import (
    ABSOLUTE,
    ACT_CODE,
    CONSENT_SCOPE,
    DEFAULT_BASE,
    LOINC,
    OBSERVATION_CATEGORY,
    PCL5_ANSWERS,
    PHQ9_ANSWERS,
    PTSD,
    RELATIVE,
    UCUM,
    measure_code,
    session_type,
)
from tooling.demo.plan import (
    Await,
    Cohort,
    PatientPlan,
    Put,
    Review,
    Step,
    Together,
    Transaction,
)
from tooling.demo.protocols import COURSES, MIX, WEEKLY, Course, dose_mg
from tooling.demo.trajectories import (
    BINS,
    Trajectory,
    items,
    offset_bin,
    suds_pair,
    trajectory,
    voc_pair,
)

# The first referral; the last course ends about 30 weeks later and the last follow-up 12
# weeks after that, so a cohort of this anchor is all in the past from late 2026 on.
ANCHOR = date(2025, 10, 6)
REFERRAL_WEEKS = 30
ORDINAL = "http://hl7.org/fhir/StructureDefinition/ordinalValue"
GIVEN = ("Sam", "Alex", "Maria", "Jonas", "Aisha", "Noor", "Lucas", "Emma", "Finn", "Sofia")
GIVEN += ("Daan", "Lea", "Omar", "Yara", "Milan", "Ines", "Ravi", "Tess", "Bram", "Zoe")
FAMILY = ("Rivera", "de Vries", "Jansen", "Bakker", "El Amrani", "Visser", "Smit", "Meijer")
FAMILY += ("Mulder", "Bos", "Kaya", "Peters", "Hendriks", "Dijkstra", "Wouters", "Nguyen")
MEDICINES = ("sertraline 100 mg daily", "venlafaxine 150 mg daily", "none", "quetiapine 25 mg")
# Chances along the way (of the patients reaching that point).
EXCLUDED_AT_SCREENING = 0.07
REVIEWED = 0.17
REVIEW_EXCLUDES = 0.2
DECLINES = 0.04
RESEARCH_CONSENT = 0.6
DROPS_OUT = 0.1
MISSES_EMDR = 0.06
BATCH = 50  # Observations per batch Bundle
DOSE_NUMBER = re.compile(r"-(?:dosing|dose|emdr)-(\d+)")
# Offset bins (by label) EMDR sessions are booked in, weighted; renormalised over the bins a
# dose leaves room for before the next one. The last dose of a course has room for all.
EMDR_BINS = {"2-24 h": 0.15, "24-72 h": 0.55, "72 h-7 d": 0.22, "over 7 d": 0.08}


@dataclass(frozen=True)
class Settings:
    """What a cohort depends on besides its seed."""

    patients: int = 200
    seed: int = 7
    anchor: date = ANCHOR
    zone: ZoneInfo = field(default_factory=lambda: ZoneInfo("Europe/Amsterdam"))
    base: str = DEFAULT_BASE
    prefix: str = "demo"


@dataclass
class Session:
    """A recorded session: its Appointment and Encounter (ids) and times."""

    appointment: str
    encounter: str
    start: datetime
    end: datetime


class PatientBuilder:
    """Builds one patient's plan (the random draws happen in a fixed order)."""

    def __init__(
        self, settings: Settings, calendar: Calendar, number: int, rng: random.Random
    ) -> None:
        self.settings, self.calendar, self.rng = settings, calendar, rng
        width = max(3, len(str(settings.patients)))
        # The seed is in the ids: a run of another seed adds its own cohort beside this one.
        self.pid = f"{settings.prefix}-s{settings.seed}-p{number:0{width}d}"
        self.number = number
        self.steps: list[Step] = []
        self.base = settings.base
        self.offsets: list[float] = []
        self.vitals: list[dict[str, Any]] = []

    # ---- helpers -------------------------------------------------------------------------
    def ref(self) -> dict[str, str]:
        return {"reference": f"Patient/{self.pid}"}

    def rid(self, suffix: str) -> str:
        return f"{self.pid}-{suffix}"

    def put(self, service: str, resource: dict[str, Any]) -> None:
        self.steps.append(Put(service, resource))

    def day_at(self, day: date, clock: time) -> datetime:
        return at(day, clock, self.settings.zone)

    # ---- intake --------------------------------------------------------------------------
    def build(self) -> PatientPlan:
        rng = self.rng
        practice_id = place.PRACTICES[rng.randrange(len(place.PRACTICES))][0]
        referred = next_weekday(
            self.settings.anchor + timedelta(days=rng.randrange(REFERRAL_WEEKS * 7))
        )
        kg = rng.randint(52, 108)
        self.put("intake", self.patient(practice_id))
        self.put("intake", self.referral(practice_id, referred))
        pathway = self.pathway()
        screened = next_weekday(referred + timedelta(days=rng.randint(4, 16)))
        yes, bp = self.contraindications(pathway)
        draw = trajectory(rng, 0.5)  # baselines at screening (the course decides the rest)
        self.put("intake", self.screening(practice_id, screened, yes, bp, kg, draw))
        plan = PatientPlan(self.pid, pathway, None, self.steps)
        if pathway == "excluded":
            return plan
        decided = screened
        if pathway.startswith("reviewed"):
            decided = next_weekday(screened + timedelta(days=rng.randint(2, 9)))
            decision = "excluded" if pathway == "reviewed-excluded" else "eligible"
            self.steps.append(Review(self.pid, decision, self.review_reason(yes, decision)))
        if pathway in ("reviewed-excluded", "declined"):
            return plan
        consented = next_weekday(decided + timedelta(days=rng.randint(1, 8)))
        self.put("intake", self.consent("treatment", consented))
        if rng.random() < RESEARCH_CONSENT:
            self.put("intake", self.consent("research", consented))
        plan.protocol = self.course(consented, kg, draw)
        plan.offsets = self.offsets
        return plan

    def pathway(self) -> str:
        pick = self.rng.random()
        if pick < EXCLUDED_AT_SCREENING:
            return "excluded"
        if pick < EXCLUDED_AT_SCREENING + REVIEWED:
            return (
                "reviewed-excluded" if self.rng.random() < REVIEW_EXCLUDES else "reviewed-eligible"
            )
        return "declined" if self.rng.random() < DECLINES else "clear"

    def contraindications(self, pathway: str) -> tuple[tuple[str, ...], tuple[int, int]]:
        """The screening's yes answers and blood pressure for the pathway."""
        rng = self.rng
        bp = (rng.randint(108, 138), rng.randint(66, 88))
        if pathway == "excluded":
            return (rng.choice(ABSOLUTE),), bp
        if pathway.startswith("reviewed"):
            if rng.random() < 0.3:  # uncontrolled at screening: reviewed like a relative one
                return (), (rng.randint(146, 165), rng.randint(92, 102))
            choices = [r for r in RELATIVE if r not in ("uncontrolled-hypertension",)]
            return (rng.choice(choices),), bp
        return (), bp

    def review_reason(self, yes: tuple[str, ...], decision: str) -> str:
        finding = yes[0].replace("-", " ") if yes else "blood pressure above 140/90"
        if decision == "eligible":
            return f"Reviewed {finding}: risk acceptable with monitoring; repeat BP 132/84"
        return f"Reviewed {finding}: the risk outweighs the expected benefit"

    def patient(self, practice_id: str) -> dict[str, Any]:
        rng = self.rng
        gender = rng.choice(("female", "male", "female", "male", "other"))
        born = date(1958, 1, 1) + timedelta(days=rng.randrange(365 * 44))
        return {
            "resourceType": "Patient",
            "id": self.pid,
            "identifier": [
                {
                    "system": "urn:example:mrn",
                    "value": f"DEMO-{self.settings.seed}-{self.number:05d}",
                }
            ],
            "name": [{"family": rng.choice(FAMILY), "given": [rng.choice(GIVEN)]}],
            "gender": gender,
            "birthDate": born.isoformat(),
            "managingOrganization": {"reference": f"Organization/{practice_id}"},
        }

    def referral(self, practice_id: str, day: date) -> dict[str, Any]:
        return {
            "resourceType": "ServiceRequest",
            "id": self.rid("referral"),
            "status": "active",
            "intent": "order",
            "subject": self.ref(),
            "requester": {"reference": f"Organization/{practice_id}"},
            "authoredOn": utc(self.day_at(day, time(11))),
            "reasonCode": [{"coding": [PTSD]}],
            "note": [{"text": "Chronic PTSD; referred for ketamine-assisted EMDR."}],
        }

    def screening(
        self,
        practice_id: str,
        day: date,
        yes: tuple[str, ...],
        bp: tuple[int, int],
        kg: int,
        draw: Trajectory,
    ) -> dict[str, Any]:
        """The published screening Questionnaire answered (its version filled in at load)."""
        rng = self.rng
        answers: list[dict[str, Any]] = [
            {"linkId": key, "answer": [{"valueBoolean": key in yes}]} for key in ABSOLUTE + RELATIVE
        ]
        for link, value, unit in (
            ("systolic-bp", bp[0], "mm[Hg]"),
            ("diastolic-bp", bp[1], "mm[Hg]"),
            ("body-weight", kg, "kg"),
        ):
            quantity = {"value": value, "unit": unit, "system": UCUM, "code": unit}
            answers.append({"linkId": link, "answer": [{"valueQuantity": quantity}]})
        medicine = rng.choice(MEDICINES)
        answers.append({"linkId": "current-medicines", "answer": [{"valueString": medicine}]})
        phq9 = items(rng, draw.baselines["phq9-total"], 9, 3)
        pcl5 = items(rng, draw.baselines["pcl5-total"], 20, 4)
        answers.append(self.scale("phq-9", phq9, LOINC, PHQ9_ANSWERS))
        pcl5_system = f"{self.base}/CodeSystem/pcl-5-response"
        answers.append(self.scale("pcl-5", pcl5, pcl5_system, PCL5_ANSWERS))
        return {
            "resourceType": "QuestionnaireResponse",
            "id": self.rid("screening"),
            "questionnaire": f"{self.base}/Questionnaire/ketamine-emdr-screening",
            "status": "completed",
            "subject": self.ref(),
            "authored": utc(self.day_at(day, time(10))),
            "author": {"reference": f"Organization/{practice_id}"},
            "item": answers,
        }

    @staticmethod
    def scale(group: str, scores: list[int], system: str, options: tuple) -> dict[str, Any]:
        answered = []
        for n, score in enumerate(scores, start=1):
            code, display = options[score]
            coding = {"system": system, "code": code, "display": display}
            answered.append({"linkId": f"{group}-{n}", "answer": [{"valueCoding": coding}]})
        return {"linkId": group, "item": answered}

    def consent(self, scope: str, day: date) -> dict[str, Any]:
        when = utc(self.day_at(day, time(10, 30)))
        rule = "Informed consent to ketamine-assisted EMDR"
        if scope == "research":
            rule = "Consent to the use of de-identified outcome data for research"
        return {
            "resourceType": "Consent",
            "id": self.rid(f"consent-{scope}"),
            "status": "active",
            "scope": {"coding": [{"system": CONSENT_SCOPE, "code": scope}]},
            "category": [{"coding": [{"system": LOINC, "code": "59284-0"}]}],
            "patient": self.ref(),
            "dateTime": when,
            "policyRule": {"text": rule},
            "provision": {"type": "permit", "period": {"start": when}},
        }

    # ---- the course ----------------------------------------------------------------------
    def course(self, consented: date, kg: int, draw: Trajectory) -> str:
        """Wait for scheduling to know the enrolment, then the CarePlan, the doses and EMDR
        sessions, and outcomes' scores; returns the protocol."""
        rng, base = self.rng, self.base
        protocol = self.pick_protocol()
        course = COURSES[protocol]
        first = monday_on_or_after(consented + timedelta(days=rng.randint(5, 12)))
        # Weekly courses start on any weekday; twice-weekly ones on a Monday or a Tuesday.
        first += timedelta(days=rng.randrange(5 if course.days == WEEKLY else 2))
        days = [first + timedelta(days=d) for d in course.days]
        if rng.random() < DROPS_OUT:
            days = days[: rng.randint(2, max(2, len(days) - 2))]
        completed = len(days) == len(course.days)
        psychiatrist = place.PSYCHIATRISTS[rng.randrange(len(place.PSYCHIATRISTS))][0]
        room_id = place.ROOMS[rng.randrange(len(place.ROOMS))][0]
        therapist = place.THERAPISTS[rng.randrange(len(place.THERAPISTS))][0]
        prefer = rng.randrange(len(place.DOSING_TIMES))
        mg = dose_mg(course, kg, rng.random())
        # Scheduling books only for a patient in active care, and doses by the screening's
        # weight; outcomes takes Observations only of patients it knows: all from events.
        self.steps += [
            Await("scheduling", f"/Patient/{self.pid}"),
            Await("scheduling", f"/QuestionnaireResponse/{self.rid('screening')}"),
            Await("scheduling", "/EpisodeOfCare", (("patient", f"Patient/{self.pid}"),), "active"),
            Await("outcomes", f"/Patient/{self.pid}"),
        ]
        plan = {
            "resourceType": "CarePlan",
            "id": self.rid("course"),
            "status": "active",
            "intent": "plan",
            "instantiatesCanonical": [f"{base}/PlanDefinition/{protocol}"],
            "subject": self.ref(),
            "author": {"reference": f"Practitioner/{psychiatrist}"},
            "period": {"start": first.isoformat()},
            "title": "Ketamine-assisted EMDR course",
            "description": course.display,
        }
        self.put("scheduling", plan)
        sessions: list[tuple[Session, datetime]] = []  # dosing session, dose end
        recorded = len(self.steps)
        for n, day in enumerate(days, start=1):
            start, doctor, room_id_now = self.calendar.dosing(day, psychiatrist, room_id, prefer)
            session = self.dosing_session(n, course, start, doctor, room_id_now)
            ended = self.dose(n, course, session, doctor, mg, kg)
            sessions.append((session, ended))
        emdr = self.emdr_sessions(course, sessions, therapist)
        self.steps[recorded:] = self.by_dose(self.steps[recorded:])
        self.offsets = [hours for _, hours, _ in emdr]
        optimal = sum(1 for _, hours, _ in emdr if offset_bin(hours) == "24-72 h")
        # The trajectory keeps the screening baselines; the optimal share nudges the response.
        shaped = trajectory(random.Random(self.rng.random()), optimal / max(len(emdr), 1))
        draw = Trajectory(
            shaped.response_class,
            shaped.reduction,
            shaped.relapse,
            draw.baselines,
            shaped.jitter,
        )
        self.scores(course, sessions, emdr, draw)
        if completed:
            self.put("scheduling", {**plan, "status": "completed"})
        else:
            self.put("scheduling", {**plan, "status": "revoked"})
        return protocol

    @staticmethod
    def by_dose(steps: list[Step]) -> list[Step]:
        """The sessions, doses and EMDR sessions as one transaction per dose: its dosing
        session and Encounter, the dose, then the EMDR session its window opened."""
        groups: dict[int, list[Put]] = {}
        for step in steps:
            assert isinstance(step, Put)
            number = int(DOSE_NUMBER.search(step.resource["id"]).group(1))  # type: ignore[union-attr]
            groups.setdefault(number, []).append(step)
        return [Transaction(tuple(groups[n])) for n in sorted(groups)]

    def pick_protocol(self) -> str:
        pick = self.rng.random()
        for protocol, share in MIX.items():
            if pick < share:
                return protocol
            pick -= share
        return next(iter(MIX))

    def encounter(
        self, kind: str, session: Session, people: list[str], room: str | None
    ) -> dict[str, Any]:
        encounter: dict[str, Any] = {
            "resourceType": "Encounter",
            "id": session.encounter,
            "status": "finished",
            "class": {"system": ACT_CODE, "code": "AMB", "display": "ambulatory"},
            "serviceType": session_type(self.base, kind),
            "subject": self.ref(),
            "appointment": [{"reference": f"Appointment/{session.appointment}"}],
            "period": {"start": utc(session.start), "end": utc(session.end)},
            "participant": [{"individual": {"reference": p}} for p in people],
        }
        if room:
            encounter["location"] = [{"location": {"reference": room}}]
        return encounter

    def appointment(
        self, kind: str, session: Session, people: list[str], description: str
    ) -> dict[str, Any]:
        """A session recorded as held (fulfilled): the clinic enters it after the fact."""
        return {
            "resourceType": "Appointment",
            "id": session.appointment,
            "status": "fulfilled",
            "serviceType": [session_type(self.base, kind)],
            "description": description,
            "start": utc(session.start),
            "end": utc(session.end),
            "basedOn": [{"reference": f"ServiceRequest/{self.rid('referral')}"}],
            "participant": [
                {"actor": self.ref(), "status": "accepted"},
                *({"actor": {"reference": p}, "status": "accepted"} for p in people),
            ],
        }

    def dosing_session(
        self, n: int, course: Course, start: datetime, doctor: str, room_id: str
    ) -> Session:
        end = start + timedelta(minutes=course.session_minutes)
        session = Session(self.rid(f"dosing-{n:02d}"), self.rid(f"dosing-{n:02d}-enc"), start, end)
        people = [f"Practitioner/{doctor}", f"Location/{room_id}"]
        # The Encounter first: the Appointment's write then finds it closed and keeps its times.
        encounter = self.encounter("dosing", session, people[:1], people[1])
        self.put("scheduling", encounter)
        self.put("scheduling", self.appointment("dosing", session, people, course.display))
        return session

    def dose(
        self, n: int, course: Course, session: Session, doctor: str, mg: float, kg: int
    ) -> datetime:
        """The pre-dose vitals at outcomes (weight at the first), then the dose; its end."""
        rng = self.rng
        # Recorded with the scores at the end (a reading this low holds no dose; the weight
        # is the screening's, which scheduling doses by until it has this one).
        self.vitals.append(
            self.blood_pressure(n, session, rng.randint(110, 136), rng.randint(68, 86))
        )
        if n == 1:
            self.vitals.append(self.weight(session, kg))
        began = session.start + timedelta(minutes=course.starts_after_minutes)
        ended = began + timedelta(minutes=course.administration_minutes)
        timing: dict[str, Any] = {"effectiveDateTime": utc(began)}
        if course.administration_minutes:
            timing = {"effectivePeriod": {"start": utc(began), "end": utc(ended)}}
        dose = {
            "resourceType": "MedicationAdministration",
            "id": self.rid(f"dose-{n:02d}"),
            "status": "completed",
            "medicationCodeableConcept": course.medication_concept(self.base),
            "subject": self.ref(),
            **timing,
            "performer": [{"actor": {"reference": f"Practitioner/{doctor}"}}],
            "supportingInformation": [
                {"reference": f"Appointment/{session.appointment}"},
                {"reference": f"Encounter/{session.encounter}"},
            ],
            "dosage": {
                "route": course.route_concept(),
                "dose": {"value": mg, "unit": "mg", "system": UCUM, "code": "mg"},
            },
        }
        self.put("scheduling", dose)
        return ended

    def emdr_sessions(
        self,
        course: Course,
        sessions: list[tuple[Session, datetime]],
        therapist: str,
    ) -> list[tuple[Session, float, datetime]]:
        """One EMDR session per dose (a few missed): (session, offset hours, dose end)."""
        found = []
        for n, (dosing, ended) in enumerate(sessions, start=1):
            if self.rng.random() < MISSES_EMDR:
                continue
            following = sessions[n][0].start if n < len(sessions) else None
            start = self.emdr_start(course, dosing, ended, following, therapist)
            if start is None:
                continue
            session = Session(
                self.rid(f"emdr-{n:02d}"),
                self.rid(f"emdr-{n:02d}-enc"),
                start,
                start + timedelta(minutes=place.EMDR_MINUTES),
            )
            person = f"Practitioner/{therapist}"
            self.put("scheduling", self.encounter("emdr", session, [person], None))
            description = "EMDR session in the plasticity window"
            self.put("scheduling", self.appointment("emdr", session, [person], description))
            found.append((session, (start - ended).total_seconds() / 3600, ended))
        return found

    def emdr_start(
        self,
        course: Course,
        dosing: Session,
        ended: datetime,
        following: datetime | None,
        therapist: str,
    ) -> datetime | None:
        """When the EMDR session after this dose starts: inside the dosing session for the
        in-session protocol, else an hour of the therapist's in a bin drawn by weight."""
        if course.in_session_emdr:
            start = dosing.start + timedelta(minutes=30)
            self.calendar.take(therapist, start)
            return start
        by_bin: dict[str, list[datetime]] = {label: [] for label in EMDR_BINS}
        zone = self.settings.zone
        local = ended.astimezone(zone).date()
        for days in range(0, 13):
            day = local + timedelta(days=days)
            if day.weekday() >= 5:
                continue
            for hour in place.EMDR_HOURS:
                start = at(day, time(hour), zone)
                hours = (start - ended).total_seconds() / 3600
                if hours < 2 or not self.calendar.therapist_free(therapist, start):
                    continue
                end = start + timedelta(minutes=place.EMDR_MINUTES)
                if following is not None and end > following - timedelta(minutes=30):
                    continue
                label = offset_bin(hours)
                if label in by_bin:
                    by_bin[label].append(start)
        open_bins = [label for label, starts in by_bin.items() if starts]
        if not open_bins:
            return None
        weights = [EMDR_BINS[label] for label in open_bins]
        label = self.rng.choices(open_bins, weights)[0]
        start = self.rng.choice(by_bin[label])
        self.calendar.take(therapist, start)
        return start

    # ---- outcomes ------------------------------------------------------------------------
    def observation(
        self, suffix: str, when: datetime, encounter: str | None, body: dict[str, Any]
    ) -> dict[str, Any]:
        observation = {
            "resourceType": "Observation",
            "id": self.rid(suffix),
            "status": "final",
            **body,
            "subject": self.ref(),
            "effectiveDateTime": utc(when),
        }
        if encounter:
            observation["encounter"] = {"reference": f"Encounter/{encounter}"}
        return observation

    def score(self, key: str, suffix: str, when: datetime, value: int, encounter: str | None):
        category = "survey"
        body = {
            "category": [{"coding": [{"system": OBSERVATION_CATEGORY, "code": category}]}],
            "code": measure_code(self.base, key),
            "valueInteger": value,
        }
        return self.observation(suffix, when, encounter, body)

    def blood_pressure(self, n: int, session: Session, systolic: int, diastolic: int) -> dict:
        def component(code: str, display: str, value: int) -> dict[str, Any]:
            quantity = {"value": value, "unit": "mmHg", "system": UCUM, "code": "mm[Hg]"}
            coding = {"system": LOINC, "code": code, "display": display}
            return {"code": {"coding": [coding]}, "valueQuantity": quantity}

        body = {
            "category": [{"coding": [{"system": OBSERVATION_CATEGORY, "code": "vital-signs"}]}],
            "code": {"coding": [{"system": LOINC, "code": "85354-9", "display": "Blood pressure"}]},
            "component": [
                component("8480-6", "Systolic blood pressure", systolic),
                component("8462-4", "Diastolic blood pressure", diastolic),
            ],
        }
        when = session.start + timedelta(minutes=5)
        return self.observation(f"dosing-{n:02d}-bp", when, session.encounter, body)

    def weight(self, session: Session, kg: int) -> dict[str, Any]:
        body = {
            "category": [{"coding": [{"system": OBSERVATION_CATEGORY, "code": "vital-signs"}]}],
            "code": {"coding": [{"system": LOINC, "code": "29463-7", "display": "Body weight"}]},
            "valueQuantity": {"value": kg, "unit": "kg", "system": UCUM, "code": "kg"},
        }
        return self.observation(
            "weight", session.start + timedelta(minutes=3), session.encounter, body
        )

    def scores(
        self,
        course: Course,
        sessions: list[tuple[Session, datetime]],
        emdr: list[tuple[Session, float, datetime]],
        draw: Trajectory,
    ) -> None:
        """Rating scales at the dosing sessions (all four at the first, PHQ-9 and GAD-7 each
        week, PCL-5 and MADRS every other week), at the end of the course and at 4 and 12
        weeks' follow-up; SUDS and VOC at the start and end of each EMDR session."""
        rng = self.rng
        first = sessions[0][0].start
        last = sessions[-1][0].start
        span = (last - first).total_seconds() / 86400
        puts: list[Put] = [Put("outcomes", vital) for vital in self.vitals]
        weeks_seen: set[int] = set()
        for n, (session, _) in enumerate(sessions, start=1):
            week = (session.start - first).days // 7
            if week in weeks_seen:
                continue
            weeks_seen.add(week)
            keys = ["phq9-total", "gad7-total"]
            if week % 2 == 0:
                keys += ["pcl5-total", "madrs-total"]
            when = session.start + timedelta(minutes=6)
            days = (when - first).total_seconds() / 86400
            for key in keys:
                value = draw.baselines[key] if n == 1 else draw.value(rng, key, days, span)
                suffix = f"{key.split('-')[0]}-dosing-{n:02d}"
                puts.append(
                    Put("outcomes", self.score(key, suffix, when, value, session.encounter))
                )
        last_day = last.astimezone(self.settings.zone).date()
        for label, weeks in (("end", 1), ("follow-up-4w", 4), ("follow-up-12w", 12)):
            day = next_weekday(last_day + timedelta(weeks=weeks))
            when = self.day_at(day, time(10))
            days = (when - first).total_seconds() / 86400
            for key in ("phq9-total", "gad7-total", "pcl5-total", "madrs-total"):
                value = draw.value(rng, key, days, span)
                suffix = f"{key.split('-')[0]}-{label}"
                puts.append(Put("outcomes", self.score(key, suffix, when, value, None)))
        for session, hours, _ in emdr:
            label = offset_bin(hours)
            suds = suds_pair(rng, label, draw.reduction)
            voc = voc_pair(rng, label)
            for key, pair in (("suds", suds), ("voc", voc)):
                for moment, value, when in (
                    ("start", pair[0], session.start + timedelta(minutes=2)),
                    ("end", pair[1], session.end - timedelta(minutes=2)),
                ):
                    suffix = f"{session.appointment.removeprefix(self.pid + '-')}-{key}-{moment}"
                    put = self.score(key, suffix, when, value, session.encounter)
                    puts.append(Put("outcomes", put))
        # Observations depend on nothing but the patient: sent in batches, as an EHR would.
        for i in range(0, len(puts), BATCH):
            self.steps.append(Together(tuple(puts[i : i + BATCH])))


def generate(settings: Settings) -> Cohort:
    """The cohort of `settings.patients` patients for `settings.seed` (pure: same in, same out)."""
    rng = random.Random(settings.seed)
    calendar = Calendar(settings.zone)
    clinic = [Put(service, body) for service, body in place.clinic_resources(settings.base)]
    patients = [
        PatientBuilder(settings, calendar, n, random.Random(rng.random())).build()
        for n in range(1, settings.patients + 1)
    ]
    return Cohort(settings.seed, clinic, patients)


def offset_bins(cohort: Cohort) -> dict[str, int]:
    """EMDR sessions per offset bin (hours from the end of the dose before them)."""
    counts = {label: 0 for label, _, _ in BINS}
    for plan in cohort.patients:
        for hours in plan.offsets:
            counts[offset_bin(hours)] += 1
    return counts


def latest(cohort: Cohort) -> datetime:
    """The latest moment the cohort records (a session's end or an observation)."""
    moments = [
        put.resource.get("effectiveDateTime") or put.resource.get("end")
        for put in cohort.puts()
        if put.resource["resourceType"] in ("Observation", "Appointment")
    ]
    found = [datetime.fromisoformat(m.replace("Z", "+00:00")) for m in moments if m]
    return max(found, default=datetime.fromisoformat("1970-01-01T00:00:00+00:00"))
