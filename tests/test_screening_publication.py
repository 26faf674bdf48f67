"""The screening Questionnaire is published at start, once per definition, and replicas
of EpisodeOfCare, Consent and screenings answer reads at scheduling and outcomes."""

from __future__ import annotations

import copy

import httpx
import pytest

from services.intake.app import create_app
from services.intake.screening.protocol import questionnaire_definition, rule_table
from shared.events.replica import ReplicaWriter
from shared.fhir.publication import publish
from tests.conftest import BACKENDS, make_settings
from tests.fhir_asserts import assert_outcome
from tests.kafka_support import serving
from tests.screening_support import BASE, KEYS, URL, new_patient, screening, search


def _publish(client: httpx.AsyncClient, definition: dict | None = None) -> dict:
    context = client._transport.app.state.fhir  # type: ignore[attr-defined]
    with context.database.write() as session:
        return publish(context.interactions, session, definition or questionnaire_definition(BASE))


@BACKENDS
async def test_the_screening_questionnaire_is_published_at_start(database_url: str):
    app = create_app(make_settings("intake", database_url))
    async with serving(app) as client:
        for params in (
            {"url": URL},
            {"name": "KetamineEmdrScreening"},
            {"url": URL, "version": "1"},
            {"status": "active", "url": URL},
        ):
            found = await search(client, "/Questionnaire", **params)
            assert [q["version"] for q in found] == ["1"], params
        items = {item["linkId"]: item for item in found[0]["item"]}
        assert [k for k in items if k in KEYS] == KEYS
        assert all(items[k]["type"] == "boolean" for k in KEYS)
        # Only the confirmed SNOMED concept is coded.
        assert [k for k in KEYS if "code" in items[k]] == ["pregnancy"]
        assert items["pregnancy"]["code"][0]["code"] == "77386006"
        loinc = {k: items[k]["code"][0]["code"] for k in ("systolic-bp", "diastolic-bp")}
        assert loinc == {"systolic-bp": "8480-6", "diastolic-bp": "8462-4"}
        assert items["body-weight"]["code"][0]["code"] == "29463-7"
        assert items["current-medicines"]["type"] == "text"
    # A second start with the same definition writes nothing.
    again = create_app(make_settings("intake", database_url))
    async with serving(again) as client:
        history = await client.get("/Questionnaire/_history")
        assert history.json()["total"] == 1


async def test_a_changed_definition_is_a_new_version(intake: httpx.AsyncClient):
    assert _publish(intake)["version"] == "1"
    assert _publish(intake)["version"] == "1"  # unchanged: not re-written
    patient_id = await new_patient(intake)
    old = await intake.post("/QuestionnaireResponse", json=screening(patient_id))
    assert old.status_code == 201, old.text

    changed = copy.deepcopy(questionnaire_definition(BASE))
    changed["title"] = "Ketamine-assisted EMDR: medical screening (revised)"
    assert _publish(intake, changed)["version"] == "2"
    assert _publish(intake, changed)["version"] == "2"
    versions = sorted(q["version"] for q in await search(intake, "/Questionnaire", url=URL))
    assert versions == ["1", "2"]
    new = await intake.post("/QuestionnaireResponse", json=screening(patient_id, version="2"))
    assert new.status_code == 201, new.text
    # The old response still points at the version it answered.
    assert (await intake.get(f"/QuestionnaireResponse/{old.json()['id']}")).json()[
        "questionnaire"
    ] == f"{URL}|1"
    by_version = await search(intake, "/QuestionnaireResponse", questionnaire=f"{URL}|1")
    assert [r["id"] for r in by_version] == [old.json()["id"]]


async def test_clients_cannot_write_the_screening_questionnaire(intake: httpx.AsyncClient):
    """Only the definition file changes the form: a client's copy under its url, an edit or a
    delete of a published version is refused, and other Questionnaires stay writable."""
    published = _publish(intake)
    forged = {**questionnaire_definition(BASE), "version": "99"}
    for response in (
        await intake.post("/Questionnaire", json=forged),
        await intake.put(
            f"/Questionnaire/{published['id']}", json={**published, "title": "Changed"}
        ),
        await intake.put(
            f"/Questionnaire/{published['id']}",
            json={**published, "url": "https://elsewhere.example.org/Questionnaire/moved"},
        ),
        await intake.delete(f"/Questionnaire/{published['id']}"),
    ):
        assert assert_outcome(response, 422, "invalid")["expression"] == ["Questionnaire.url"]
    assert [q["version"] for q in await search(intake, "/Questionnaire", url=URL)] == ["1"]
    other = {**forged, "url": "https://practice.example.org/Questionnaire/intake-form"}
    assert (await intake.post("/Questionnaire", json=other)).status_code == 201


def test_a_questionnaire_missing_a_rule_item_fails_at_load(monkeypatch: pytest.MonkeyPatch):
    assert rule_table().version
    from services.intake.screening import protocol

    original = protocol.rule_table()
    extra = protocol.Rule("new-rule", "relative", "New", "test")
    monkeypatch.setattr(
        protocol,
        "rule_table",
        lambda: protocol.RuleTable(
            original.version, (*original.rules, extra), original.bp_rule, 140, 90
        ),
    )
    with pytest.raises(ValueError, match="new-rule"):
        protocol.questionnaire_definition(BASE)


def _replicate(client: httpx.AsyncClient, res_type: str, res_id: str, body: dict) -> None:
    context = client._transport.app.state.fhir  # type: ignore[attr-defined]
    with context.database.write() as session:
        assert ReplicaWriter(context.store).put_version(
            session, res_type, res_id, 1, {**body, "id": res_id}
        )


@pytest.mark.parametrize("service", ["scheduling", "outcomes"])
async def test_episode_and_consent_replicas_answer_reads(service_client, service: str):
    episode = {
        "resourceType": "EpisodeOfCare",
        "status": "waitlist",
        "patient": {"reference": "Patient/p1"},
    }
    consent = {
        "resourceType": "Consent",
        "status": "active",
        "scope": {"text": "treatment"},
        "category": [{"text": "treatment"}],
        "patient": {"reference": "Patient/p1"},
    }
    types = [("EpisodeOfCare", episode), ("Consent", consent)]
    if service == "outcomes":
        types.append(("QuestionnaireResponse", screening("p1")))
    async with service_client(service) as client:
        _replicate(client, "Patient", "p1", {"resourceType": "Patient"})
        for res_type, body in types:
            _replicate(client, res_type, "r1", body)
            read = await client.get(f"/{res_type}/r1")
            assert read.status_code == 200, read.text
            assert read.json()["id"] == "r1"
            assert [r["id"] for r in await search(client, f"/{res_type}", patient="p1")] == ["r1"]
            refused = await client.post(f"/{res_type}", json=body)
            assert refused.status_code == 405, refused.text


async def test_outcomes_keeps_a_read_only_questionnaire_replica(service_client):
    questionnaire = questionnaire_definition(BASE)
    async with service_client("outcomes") as client:
        _replicate(client, "Questionnaire", "q1", {**questionnaire, "version": "1"})
        read = await client.get("/Questionnaire/q1")
        assert read.status_code == 200, read.text
        assert [q["id"] for q in await search(client, "/Questionnaire", url=URL)] == ["q1"]
        for method, path in (
            ("POST", "/Questionnaire"),
            ("PUT", "/Questionnaire/q1"),
            ("DELETE", "/Questionnaire/q1"),
        ):
            body = None if method == "DELETE" else questionnaire
            refused = await client.request(method, path, json=body)
            assert_outcome(refused, 405, "not-supported")
            assert "intake" in refused.json()["issue"][0]["diagnostics"]
