"""`make demo` (issue 11): the seeded cohort loaded through the three services' public APIs on a
real broker, and the generator's determinism."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

import httpx

from tests import kafka_support
from tests.auth_support import bearer
from tests.kafka_support import Running, eventually, programme
from tooling.broker import Broker
from tooling.demo.cli import main
from tooling.demo.clinic import PSYCHIATRISTS
from tooling.demo.cohort import Settings, generate, offset_bins
from tooling.demo.loader import Loader, LoadError
from tooling.demo.plan import Cohort, PatientPlan, Put
from tooling.demo.trajectories import offset_bin

kafka_broker = kafka_support.kafka_broker
topic_prefix = kafka_support.topic_prefix
new_database = kafka_support.new_database

# Six patients of this seed: one excluded at screening, one reviewed, and courses of every
# protocol with EMDR sessions in every offset bin (checked below, so a changed generator
# that loses one of them says so).
SMALL = Settings(patients=6, seed=79)
OPENED_BY = "https://fhir.example.org/kemdr/StructureDefinition/opened-by-dose"


def test_one_seed_gives_the_same_cohort_and_another_seed_another():
    first, again = generate(SMALL), generate(SMALL)
    assert first.fingerprint() == again.fingerprint()
    other = generate(Settings(patients=6, seed=80))
    assert other.fingerprint() != first.fingerprint()
    pathways = Counter(plan.pathway for plan in first.patients)
    assert pathways["excluded"] >= 1 and pathways["reviewed-eligible"] >= 1
    assert sum(1 for bins in offset_bins(first).values() if bins) == 5


def test_ids_are_stable_and_unique_per_type():
    puts = generate(Settings(patients=20, seed=7)).puts()
    ids = Counter((p.resource["resourceType"], p.resource["id"]) for p in puts)
    # Only the CarePlans are written twice: active for the course, then completed or revoked.
    assert {key for key, n in ids.items() if n > 1} == {key for key in ids if key[0] == "CarePlan"}
    patients = [p.resource["id"] for p in puts if p.resource["resourceType"] == "Patient"]
    assert patients == [f"demo-s7-p{n:03d}" for n in range(1, 21)]


def test_a_cohort_that_would_end_in_the_future_is_refused_before_any_request(capsys):
    assert main(["--patients", "3", "--anchor", "2099-01-05"]) == 2
    assert "give an earlier --anchor" in capsys.readouterr().err
    assert main(["--patients", "0"]) == 2


async def test_a_refused_request_stops_the_load_naming_the_patient_and_the_reason(
    intake: httpx.AsyncClient,
):
    good = {"resourceType": "Patient", "id": "demo-s1-p001", "gender": "female"}
    bad = {"resourceType": "Patient", "id": "demo-s1-p002", "gender": "sometimes"}
    cohort = Cohort(
        1,
        [],
        [
            PatientPlan("demo-s1-p001", "clear", None, [Put("intake", good)]),
            PatientPlan("demo-s1-p002", "clear", None, [Put("intake", bad)]),
        ],
    )
    loader = Loader({"intake": intake}, concurrency=1)
    try:
        await loader.load(cohort)
    except LoadError as exc:
        message = str(exc)
    else:
        raise AssertionError("the load went on past a refused request")
    assert message.startswith("Patient/demo-s1-p002: intake PUT /Patient/demo-s1-p002: 422")
    assert "gender" in message
    assert loader.report.patients == 1


async def _total(client: httpx.AsyncClient, res_type: str, **params: str) -> int:
    response = await client.get(f"/{res_type}", params={**params, "_summary": "count"})
    assert response.status_code == 200, response.text
    return response.json()["total"]


async def _all(client: httpx.AsyncClient, res_type: str, **params: str) -> list[dict[str, Any]]:
    response = await client.get(f"/{res_type}", params={**params, "_count": "1000"})
    assert response.status_code == 200, response.text
    return [entry["resource"] for entry in response.json().get("entry", [])]


async def test_the_demo_loads_a_cohort_through_the_three_services(
    kafka_broker: Broker, topic_prefix: str, new_database: Callable[[str], str]
):
    cohort = generate(SMALL)
    async with programme(kafka_broker, topic_prefix, new_database) as services:
        clients = dict(zip(("intake", "scheduling", "outcomes"), services, strict=True))
        loader = Loader(
            {name: running.client for name, running in clients.items()},
            clinician=bearer(user=f"Practitioner/{PSYCHIATRISTS[0][0]}"),
            wait_s=30,
        )
        report = await loader.load(cohort)
        assert (report.patients, report.skipped) == (6, 0)
        await _holds_what_was_sent(clients, cohort)
        await _screening_outcomes(clients["intake"].client, cohort)
        await _sessions_and_scores(clients["scheduling"].client, clients["outcomes"].client, cohort)

        await _a_patients_outcomes(clients["outcomes"].client, cohort)

        # A second run finds every patient loaded and writes no patient data again.
        again = await Loader(
            {name: running.client for name, running in clients.items()},
            clinician=bearer(user=f"Practitioner/{PSYCHIATRISTS[0][0]}"),
        ).load(cohort)
        assert (again.patients, again.skipped) == (6, 6)
        await _holds_what_was_sent(clients, cohort)


async def _holds_what_was_sent(clients: dict[str, Running], cohort: Any) -> None:
    """Every service holds each type sent to it, as many as were sent (none doubled)."""
    sent: dict[tuple[str, str], set[str]] = {}
    for put in cohort.puts():
        key = (put.service, put.resource["resourceType"])
        sent.setdefault(key, set()).add(put.resource["id"])
    for (service, res_type), ids in sent.items():
        # Outcomes derives the PHQ-9 and PCL-5 baselines from each screening besides.
        mine = {"derived-from:missing": "true"} if res_type == "Observation" else {}
        found = await _total(clients[service].client, res_type, **mine)
        assert found == len(ids), (service, res_type)
    screened = len(cohort.patients)
    derived = {"derived-from:missing": "false"}
    assert await _total(clients["outcomes"].client, "Observation", **derived) == 2 * screened


async def _screening_outcomes(intake: httpx.AsyncClient, cohort: Any) -> None:
    """The excluded patient's episode is cancelled; the reviewed one carries the review."""
    for plan in cohort.patients:
        (episode,) = await _all(intake, "EpisodeOfCare", patient=f"Patient/{plan.patient}")
        history = [h["status"] for h in episode.get("statusHistory", [])]
        if plan.pathway == "excluded":
            assert episode["status"] == "cancelled"
        elif plan.pathway == "reviewed-eligible":
            assert "onhold" in history and episode["status"] == "active"
            issues = await _all(intake, "DetectedIssue", patient=f"Patient/{plan.patient}")
            assert issues and all(issue.get("mitigation") for issue in issues)
        elif plan.protocol:
            assert episode["status"] == "active"


async def _sessions_and_scores(
    sched: httpx.AsyncClient, out: httpx.AsyncClient, cohort: Cohort
) -> None:
    """EMDR sessions stamped with the dose that opened them at several offsets; SUDS and VOC
    at the start and end of each, pointing at its Encounter; rating scales over time."""
    system = "https://fhir.example.org/kemdr/CodeSystem/session-type"
    sessions = await _all(sched, "Appointment", **{"service-type": f"{system}|emdr"})
    offsets = []
    for session in sessions:
        assert session["status"] == "fulfilled"
        (stamp,) = [e for e in session.get("extension", []) if e["url"] == OPENED_BY]
        parts = {part["url"]: part for part in stamp["extension"]}
        offsets.append(float(parts["offset-hours"]["valueDecimal"]))
    bins = Counter(offset_bin(hours) for hours in offsets)
    assert len(bins) >= 4, bins
    encounters = {e["id"]: e for e in await _all(sched, "Encounter")}
    local = "https://fhir.example.org/kemdr/CodeSystem/outcome-measure"
    suds = await _all(out, "Observation", code=f"{local}|suds")
    assert len(suds) == 2 * len(sessions)
    for observation in suds:
        encounter = encounters[observation["encounter"]["reference"].split("/")[1]]
        (appointment,) = encounter["appointment"]
        assert appointment["reference"].split("/")[1] in {s["id"] for s in sessions}
    phq9 = await _all(out, "Observation", code="http://loinc.org|44261-6", _sort="date")
    per_patient = Counter(o["subject"]["reference"] for o in phq9)
    # Every screened patient has the baseline derived from screening; on a course, also the
    # ones of the dosing sessions, the end of the course and the follow-ups.
    for plan in cohort.patients:
        least = 5 if plan.protocol else 1
        assert per_patient[f"Patient/{plan.patient}"] >= least, plan.patient


async def _a_patients_outcomes(out: httpx.AsyncClient, cohort: Cohort) -> None:
    """Once scheduling's events are in, `$outcomes` tells a course patient's story: a PHQ-9
    baseline and a later score, and doses, EMDR sessions and scores on the timeline."""
    plan = next(p for p in cohort.patients if p.protocol)
    doses = sum(1 for p in plan.puts() if p.resource["resourceType"] == "MedicationAdministration")

    async def told() -> dict[str, Any] | None:
        response = await out.get(f"/Patient/{plan.patient}/$outcomes")
        assert response.status_code == 200, response.text
        events = [p for p in response.json()["parameter"] if p["name"] == "event"]
        kinds = Counter(
            part["valueCode"] for e in events for part in e["part"] if part["name"] == "type"
        )
        return response.json() if kinds["dose"] == doses and kinds["emdr-session"] else None

    summary = await eventually(told, timeout=30, what="the patient's doses at outcomes")
    measures = {
        part["valueCoding"]["code"]: {q["name"] for q in m["part"]}
        for m in summary["parameter"]
        if m["name"] == "measure"
        for part in m["part"]
        if part["name"] == "instrument"
    }
    assert {"baseline", "latest", "change", "response"} <= measures["44261-6"]
