"""The README's course walk-through (issue 10), step by step, with the very files it pastes.

The README sends `docs/walkthrough/course/*.json` with curl after filling in their
`{{placeholders}}` (`cfill`), going on from the intake walk-through's end state; this test
runs the intake walk-through (tests/test_walkthrough.py) and then sends the course files in the
same order, filled the same way, through the three services on a real broker with the same
token, and checks what the README says each step shows.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import httpx

from tests import kafka_support
from tests.course_support import (
    HOLD_CODE,
    HOLD_URL,
    OPTIMAL_END,
    OPTIMAL_START,
    PER_KG,
    WAIT,
    WINDOW_END,
    WINDOW_START,
    clinic_zone,
    course_days,
    first_monday,
    parse,
    rule_of,
    window_values,
)
from tests.finding_support import HOLD_EXPIRES, OPENED_BY, given, opened
from tests.kafka_support import eventually, programme
from tests.test_walkthrough import CLINICIAN
from tests.test_walkthrough import _walk as intake_walkthrough
from tooling.broker import Broker

kafka_broker = kafka_support.kafka_broker
topic_prefix = kafka_support.topic_prefix
new_database = kafka_support.new_database

ROOT = Path(__file__).resolve().parent.parent
STEPS = ROOT / "docs" / "walkthrough" / "course"
README = ROOT / "README.md"
SECTION = "## Scheduling: a whole course, step by step"
PSYCHIATRIST = "Practitioner/dr-example"  # the intake walk-through's token's user
PATCH = {**CLINICIAN, "Content-Type": "application/json-patch+json"}
# The days of doses 2 to 6 after the first Monday (the README's loop): Thu, Mon, Thu, Mon, Thu.
LATER_DOSES = (3, 7, 10, 14, 17)
MG, KG = 36, 72


def _walkthrough_block() -> str:
    text = README.read_text()
    start = text.index(SECTION)
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else len(text)]


def _files(text: str) -> list[str]:
    return re.findall(r"cfill ([\w-]+\.json)", text)


class Shell:
    """The walk-through's shell variables (what `cfill` fills in) and the files sent."""

    def __init__(self, zone: Any, first: date) -> None:
        self.zone = zone
        self.values = {"first": first.isoformat(), "last": (first + timedelta(27)).isoformat()}
        self.sent: list[str] = []
        self.day(first)

    def day(self, day: date) -> None:
        """`D=...`: the day the dose steps are for, and its UTC offset at noon (`{{tz}}`)."""
        self.values["day"] = day.isoformat()
        self.values["tz"] = datetime.combine(day, time(12), self.zone).isoformat()[-6:]

    def at(self, clock: str) -> datetime:
        """The clinic's wall-clock time `clock` on the current day."""
        return datetime.fromisoformat(f"{self.values['day']}T{clock}{self.values['tz']}")

    def fill(self, name: str) -> Any:
        text = (STEPS / name).read_text()
        for key, value in self.values.items():
            text = text.replace("{{" + key + "}}", value)
        assert "{{" not in text, f"{name} has a placeholder not filled at this step: {text}"
        self.sent.append(name)
        return json.loads(text)


# ---- the README block --------------------------------------------------------------------
# The files the README block sends, in order: the clinic, the course and the held first dose;
# then doses 2 to 6, once each time round its loop.
FIRST_DOSE = [
    "practitioner.json",
    "psychiatrist-role.json",
    "therapist.json",
    "therapist-role.json",
    "room.json",
    "schedule-dosing.json",
    "schedule-room.json",
    "schedule-emdr.json",
    "generate-dosing-slots.json",
    "generate-dosing-slots.json",
    "generate-emdr-slots.json",
    "care-plan.json",
    "dosing-session.json",
    "arrived.json",
    "weight.json",
    "blood-pressure.json",
    "dose.json",
    "release-hold.json",
    "dose.json",
    "fulfilled.json",
    "find-emdr.json",
]
LATER_DOSE = [
    "dosing-session.json",
    "arrived.json",
    "dose.json",
    "fulfilled.json",
    "find-emdr.json",
]


def test_the_readme_block_sends_every_course_file_in_order():
    block = _walkthrough_block()
    once, loop = block.split("\nfor ", 1)
    assert loop.startswith(f"n in {' '.join(map(str, LATER_DOSES))}; do")
    assert _files(once) == FIRST_DOSE
    assert _files(loop) == LATER_DOSE
    assert sorted(set(FIRST_DOSE + LATER_DOSE)) == sorted(p.name for p in STEPS.glob("*.json"))
    # `cfill` fills exactly the placeholders the files have.
    (definition,) = re.findall(
        r"cfill\(\) \{.*?\n\s*\"docs/walkthrough/course/\$1\"; \}", block, re.S
    )
    in_files = {
        m for p in STEPS.glob("*.json") for m in re.findall(r"\{\{([\w-]+)\}\}", p.read_text())
    }
    assert set(re.findall(r"\{\{([\w-]+)\}\}", definition)) == in_files


# ---- the walk-through ----------------------------------------------------------------------
async def test_the_course_walkthrough(
    kafka_broker: Broker, topic_prefix: str, new_database: Callable[[str], str]
):
    services = programme(kafka_broker, topic_prefix, new_database)
    async with services as (intake, scheduling, outcomes):
        pid, episode = await intake_walkthrough(intake.client)
        zone = clinic_zone(scheduling.client)
        shell = Shell(zone, first_monday(datetime.now(zone).date()))
        shell.values |= {"patient": pid, "episode": episode}
        walk = Walk(intake.client, scheduling.client, outcomes.client, shell)
        await walk.clinic()
        await walk.course()
        await walk.held_dose()
        for offset in LATER_DOSES:
            await walk.later_dose(offset)
        await walk.done()
    assert shell.sent == FIRST_DOSE + LATER_DOSE * len(LATER_DOSES)


class Walk:
    """The README's commands, one method per part of the block."""

    def __init__(
        self,
        front: httpx.AsyncClient,
        sched: httpx.AsyncClient,
        out: httpx.AsyncClient,
        shell: Shell,
    ) -> None:
        self.front, self.sched, self.out, self.shell = front, sched, out, shell
        self.schedules: dict[str, str] = {}

    async def send(
        self, client: httpx.AsyncClient, method: str, path: str, name: str, status: int = 0
    ) -> httpx.Response:
        body = self.shell.fill(name)
        if isinstance(body, list):  # a JSON Patch
            response = await client.request(method, path, content=json.dumps(body), headers=PATCH)
        else:
            response = await client.request(method, path, json=body, headers=CLINICIAN)
        if status:
            assert response.status_code == status, f"{method} {path}: {response.text}"
        else:
            assert response.status_code in (200, 201), f"{method} {path}: {response.text}"
        return response

    async def get(self, client: httpx.AsyncClient, path: str) -> dict[str, Any]:
        response = await client.get(path, headers=CLINICIAN)
        assert response.status_code == 200, f"GET {path}: {response.text}"
        return response.json()

    async def first(self, client: httpx.AsyncClient, path: str) -> dict[str, Any]:
        """`curl ... | first`: the first resource of a search."""
        return (await self.get(client, path))["entry"][0]["resource"]

    async def clinic(self) -> None:
        sched, shell = self.sched, self.shell
        doctor = (await self.send(sched, "PUT", f"/{PSYCHIATRIST}", "practitioner.json")).json()
        assert doctor["id"] == "dr-example"
        await self.send(sched, "POST", "/PractitionerRole", "psychiatrist-role.json", 201)
        therapist = await self.send(sched, "POST", "/Practitioner", "therapist.json", 201)
        shell.values["therapist"] = therapist.json()["id"]
        role = await self.send(sched, "POST", "/PractitionerRole", "therapist-role.json", 201)
        shell.values["role"] = role.json()["id"]
        room = await self.send(sched, "POST", "/Location", "room.json", 201)
        shell.values["room"] = room.json()["id"]
        for kind in ("dosing", "room", "emdr"):
            made = await self.send(sched, "POST", "/Schedule", f"schedule-{kind}.json", 201)
            self.schedules[kind] = made.json()["id"]
        for kind, slots, created in (
            ("dosing", "dosing", 60),
            ("room", "dosing", 60),
            ("emdr", "emdr", 160),
        ):
            path = f"/Schedule/{self.schedules[kind]}/$generate-slots"
            done = await self.send(sched, "POST", path, f"generate-{slots}-slots.json", 200)
            counts = {p["name"]: p["valueInteger"] for p in done.json()["parameter"]}
            assert counts == {"created": created, "skipped": 0, "overlapping": 0}

    async def course(self) -> None:
        sched, shell = self.sched, self.shell
        pid, episode = shell.values["patient"], shell.values["episode"]

        async def active() -> bool:  # until curl ... | grep -q '"status":"active"'
            response = await sched.get(f"/EpisodeOfCare/{episode}", headers=CLINICIAN)
            return '"status":"active"' in response.text

        await eventually(active, timeout=WAIT, what="the active episode at scheduling")
        referral = await self.first(self.front, f"/ServiceRequest?subject=Patient/{pid}")
        shell.values["referral"] = referral["id"]
        plan = (await self.send(sched, "POST", "/CarePlan", "care-plan.json", 201)).json()
        (canonical,) = plan["instantiatesCanonical"]
        assert canonical.endswith("/PlanDefinition/iv-racemic|1.0.0")  # pinned

    async def book(self) -> str:
        """Find the day's first free slots, book the dosing session in them, arrive."""
        sched, shell = self.sched, self.shell
        day = shell.values["day"]
        for kind, name in (("dosing", "dosing-slot"), ("room", "room-slot")):
            query = f"schedule=Schedule/{self.schedules[kind]}&status=free&start={day}&_sort=start"
            shell.values[name] = (await self.first(sched, f"/Slot?{query}"))["id"]
        session = (
            await self.send(sched, "POST", "/Appointment", "dosing-session.json", 201)
        ).json()
        assert session["status"] == "booked"
        assert parse(session["start"]) == shell.at("09:00:00")
        shell.values["session"] = session["id"]
        slot = await self.get(sched, f"/Slot/{shell.values['dosing-slot']}")
        assert slot["status"] == "busy"
        path = f"/Appointment/{session['id']}"
        arrived = (await self.send(sched, "PATCH", path, "arrived.json")).json()
        assert arrived["status"] == "arrived"
        encounter = await self.first(sched, f"/Encounter?appointment=Appointment/{session['id']}")
        assert encounter["status"] == "in-progress"
        shell.values["encounter"] = encounter["id"]
        return path

    async def give(self) -> dict[str, Any]:
        """The dose: 201, its mg/kg by the weight measured at outcomes."""
        response = await self.send(
            self.sched, "POST", "/MedicationAdministration", "dose.json", 201
        )
        dose = response.json()
        (per_kg,) = [e for e in dose["extension"] if e["url"] == PER_KG]
        assert per_kg["valueQuantity"]["value"] == MG / KG == 0.5
        return dose

    async def fulfil(self, path: str) -> None:
        fulfilled = (await self.send(self.sched, "PATCH", path, "fulfilled.json")).json()
        assert fulfilled["status"] == "fulfilled"
        encounter = await self.get(self.sched, f"/Encounter/{self.shell.values['encounter']}")
        assert encounter["status"] == "finished"

    async def emdr(self, dose: dict[str, Any]) -> dict[str, Any]:
        """`$find` (optimal part first), `$hold` the first proposal, `$book` it."""
        sched = self.sched
        window = window_values(
            await self.get(sched, f"/MedicationAdministration/{dose['id']}/$plasticity-window")
        )
        found = await self.send(sched, "POST", "/Appointment/$find", "find-emdr.json", 200)
        proposal = found.json()["entry"][0]["resource"]
        assert proposal["status"] == "proposed"
        assert parse(proposal["start"]) == window["optimalStart"]
        response = await sched.post("/Appointment/$hold", json=given(proposal), headers=CLINICIAN)
        assert response.status_code == 201, response.text
        held = response.json()
        assert held["status"] == "pending"
        (expires,) = [e["valueDateTime"] for e in held["extension"] if e["url"] == HOLD_EXPIRES]
        assert timedelta(0) < parse(expires) - datetime.now(UTC) <= timedelta(minutes=10)
        response = await sched.post("/Appointment/$book", json=given(held), headers=CLINICIAN)
        assert response.status_code == 200, response.text
        booked = response.json()
        assert (booked["id"], booked["status"]) == (held["id"], "booked")
        assert booked["serviceType"][0]["coding"][0]["code"] == "emdr"
        # The next day at 10:00 on the clinic's clock, 24 h after the dose ended.
        ended = parse(dose["effectivePeriod"]["end"])
        start = parse(booked["start"]).astimezone(self.shell.zone)
        assert (start.date() - ended.date(), start.time()) == (timedelta(days=1), time(10))
        recorded = opened(booked)
        assert recorded == {
            "dose": {"reference": f"MedicationAdministration/{dose['id']}"},
            "offset-hours": OPTIMAL_START,
        }
        assert [e["url"] for e in booked["extension"]] == [OPENED_BY]
        return booked

    async def held_dose(self) -> None:
        sched, out, shell = self.sched, self.out, self.shell
        path = await self.book()
        weight = await self.send(out, "POST", "/Observation", "weight.json", 201)
        reading = await self.send(out, "POST", "/Observation", "blood-pressure.json", 201)

        async def replicated() -> bool:  # until curl -sfo /dev/null ... Observation/$WT
            response = await sched.get(f"/Observation/{weight.json()['id']}", headers=CLINICIAN)
            return response.status_code == 200

        async def on_hold() -> bool:  # until curl ... Appointment/$APPT | grep -q needs-action
            response = await sched.get(path, headers=CLINICIAN)
            return "needs-action" in response.text

        await eventually(replicated, timeout=WAIT, what="the weight at scheduling")
        await eventually(on_hold, timeout=WAIT, what="the session held for blood pressure")
        held = await self.get(sched, path)
        assert held["status"] == "arrived"  # kept: the hold is on the psychiatrist
        assert [p["status"] for p in held["participant"]] == [
            "accepted",
            "needs-action",
            "accepted",
        ]
        issues = await self.get(sched, f"/DetectedIssue?code={HOLD_CODE}&status=preliminary")
        (issue,) = [entry["resource"] for entry in issues["entry"]]
        assert [i["reference"] for i in issue["implicated"]] == [
            f"Observation/{reading.json()['id']}",
            path[1:],
        ]
        assert "above the hold threshold 140/90 mmHg" in issue["detail"]
        assert held["extension"] == [
            {"url": HOLD_URL, "valueReference": {"reference": f"DetectedIssue/{issue['id']}"}}
        ]
        refused = await self.send(sched, "POST", "/MedicationAdministration", "dose.json", 409)
        assert f"on hold (DetectedIssue/{issue['id']}" in rule_of(refused)

        released = (
            await self.send(sched, "POST", f"{path}/$release-hold", "release-hold.json", 200)
        ).json()
        assert [p["status"] for p in released["participant"]] == ["accepted"] * 3
        assert "extension" not in released
        closed = await self.get(sched, f"/DetectedIssue/{issue['id']}")
        assert closed["status"] == "final"
        (mitigation,) = closed["mitigation"]
        assert mitigation["author"] == {"reference": PSYCHIATRIST}
        assert "Repeat reading 134/84" in mitigation["action"]["text"]

        dose = await self.give()
        window = window_values(
            await self.get(sched, f"/MedicationAdministration/{dose['id']}/$plasticity-window")
        )
        ended = shell.at("10:00:00")
        assert parse(dose["effectivePeriod"]["end"]) == ended
        assert [window[name] - ended for name in ("windowStart", "optimalStart")] == [
            timedelta(hours=WINDOW_START),
            timedelta(hours=OPTIMAL_START),
        ]
        assert [window[name] - ended for name in ("optimalEnd", "windowEnd")] == [
            timedelta(hours=OPTIMAL_END),
            timedelta(hours=WINDOW_END),
        ]
        assert window["protocol"] == "iv-racemic|1.0.0"
        await self.fulfil(path)
        await self.emdr(dose)

    async def later_dose(self, offset: int) -> None:
        first = date.fromisoformat(self.shell.values["first"])
        self.shell.day(first + timedelta(days=offset))
        path = await self.book()
        dose = await self.give()
        await self.fulfil(path)
        await self.emdr(dose)

    async def done(self) -> None:
        pid = self.shell.values["patient"]
        query = f"/Appointment?patient=Patient/{pid}&_sort=date&_count=50"
        sessions = [e["resource"] for e in (await self.get(self.sched, query))["entry"]]
        kinds = [(s["serviceType"][0]["coding"][0]["code"], s["status"]) for s in sessions]
        assert kinds == [("dosing", "fulfilled"), ("emdr", "booked")] * 6
        first = date.fromisoformat(self.shell.values["first"])
        days = [parse(s["start"]).astimezone(self.shell.zone).date() for s in sessions[::2]]
        assert days == course_days(first)

        async def mirrored() -> bool:
            found = await self.get(self.out, f"/Appointment?patient=Patient/{pid}&_count=50")
            copies = {e["resource"]["id"]: e["resource"] for e in found.get("entry", [])}
            return copies == {s["id"]: s for s in sessions}

        await eventually(mirrored, timeout=WAIT, what="outcomes' copies of the sessions")
