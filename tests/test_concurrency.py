"""Concurrent writers: no lost updates, no version gaps, no duplicates and never a 500."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
from sqlalchemy import select

from shared.db.models import OutboxRow
from tests.conftest import BACKENDS
from tests.factories import FHIR_JSON, observation, patient
from tests.measures_support import known_patient
from tests.outbox_rows import RESOURCE_EVENTS

pytestmark = BACKENDS

PATCH_JSON = {"Content-Type": "application/json-patch+json"}


@pytest.fixture
def outcomes(outcomes: httpx.AsyncClient) -> httpx.AsyncClient:
    """Outcomes knowing the patient of these Observations (p1), as intake's event would."""
    known_patient(outcomes, "p1")
    return outcomes


async def _create(client: httpx.AsyncClient, body: dict) -> dict:
    response = await client.post(f"/{body['resourceType']}", json=body, headers=FHIR_JSON)
    assert response.status_code == 201, response.text
    return response.json()


async def _versions(client: httpx.AsyncClient, path: str) -> list[int]:
    history = await client.get(f"{path}/_history", params={"_count": 500})
    assert history.status_code == 200, history.text
    body = history.json()
    versions = [int(e["response"]["etag"][3:-1]) for e in body.get("entry", [])]
    assert body["total"] == len(versions)
    return versions


def _event_versions(client: httpx.AsyncClient, subject: str) -> list[int]:
    """The versionids of the outbox events about one resource, in outbox order."""
    database = client._transport.app.state.fhir.database  # type: ignore[attr-defined]
    with database.read() as session:
        rows = session.execute(
            select(OutboxRow.payload).where(RESOURCE_EVENTS).order_by(OutboxRow.pk)
        ).scalars()
        events = [json.loads(payload) for payload in rows]
    return [int(e["versionid"]) for e in events if e["subject"] == subject]


async def test_fifty_concurrent_updates_make_fifty_one_versions(intake: httpx.AsyncClient):
    created = await _create(intake, patient())
    pid = created["id"]

    def body(n: int) -> dict:
        return {**created, "name": [{"family": f"Writer{n}", "given": ["Peter"]}]}

    responses = await asyncio.gather(
        *(intake.put(f"/Patient/{pid}", json=body(n), headers=FHIR_JSON) for n in range(50))
    )
    assert sorted(r.status_code for r in responses) == [200] * 50, [
        r.text for r in responses if r.status_code != 200
    ]
    # Every writer got its own version: 2..51, each once.
    assert sorted(int(r.json()["meta"]["versionId"]) for r in responses) == list(range(2, 52))
    current = (await intake.get(f"/Patient/{pid}")).json()
    assert current["meta"]["versionId"] == "51"
    assert sorted(await _versions(intake, f"/Patient/{pid}")) == list(range(1, 52))
    # The current content is the one written as version 51.
    winner = next(r.json() for r in responses if r.json()["meta"]["versionId"] == "51")
    assert current == winner
    assert (await intake.get("/Patient", params={"family": "Writer"})).json()["total"] == 1
    # Exactly one event per committed version, in commit order.
    assert _event_versions(intake, f"Patient/{pid}") == list(range(1, 52))


async def test_two_updates_with_the_same_if_match_one_wins(intake: httpx.AsyncClient):
    created = await _create(intake, patient())
    pid = created["id"]
    headers = {**FHIR_JSON, "If-Match": 'W/"1"'}
    first, second = await asyncio.gather(
        intake.put(f"/Patient/{pid}", json={**created, "gender": "female"}, headers=headers),
        intake.put(f"/Patient/{pid}", json={**created, "gender": "other"}, headers=headers),
    )
    assert sorted([first.status_code, second.status_code]) == [200, 412]
    winner, loser = (first, second) if first.status_code == 200 else (second, first)
    assert winner.headers["etag"] == 'W/"2"'
    assert loser.json()["issue"][0]["code"] == "conflict"
    current = (await intake.get(f"/Patient/{pid}")).json()
    assert current["meta"]["versionId"] == "2"
    assert current["gender"] == winner.json()["gender"]
    assert sorted(await _versions(intake, f"/Patient/{pid}")) == [1, 2]
    assert _event_versions(intake, f"Patient/{pid}") == [1, 2]


async def test_concurrent_patches_without_if_match_all_apply(intake: httpx.AsyncClient):
    created = await _create(intake, patient(telecom=[]))
    pid = created["id"]
    ops = [
        [{"op": "add", "path": "/telecom/-", "value": {"system": "phone", "value": f"0{n}"}}]
        for n in range(10)
    ]
    responses = await asyncio.gather(
        *(intake.patch(f"/Patient/{pid}", json=o, headers=PATCH_JSON) for o in ops)
    )
    assert [r.status_code for r in responses] == [200] * 10, [r.text for r in responses]
    current = (await intake.get(f"/Patient/{pid}")).json()
    assert current["meta"]["versionId"] == "11"
    # No patch was lost: each one's phone number is there exactly once.
    assert sorted(t["value"] for t in current["telecom"]) == [f"0{n}" for n in range(10)]


async def test_concurrent_puts_creating_one_id(intake: httpx.AsyncClient):
    responses = await asyncio.gather(
        *(
            intake.put("/Patient/pt-race", json=patient(id="pt-race"), headers=FHIR_JSON)
            for _ in range(10)
        )
    )
    assert sorted(r.status_code for r in responses) == [200] * 9 + [201], [
        r.text for r in responses
    ]
    assert sorted(await _versions(intake, "/Patient/pt-race")) == list(range(1, 11))


async def test_concurrent_conditional_updates_create_once(intake: httpx.AsyncClient):
    url = "/Patient?identifier=urn:mrn|race-7"
    body = patient(identifier=[{"system": "urn:mrn", "value": "race-7"}])
    responses = await asyncio.gather(
        *(intake.put(url, json=body, headers=FHIR_JSON) for _ in range(8))
    )
    assert sorted(r.status_code for r in responses) == [200] * 7 + [201], [
        r.text for r in responses
    ]
    assert len({r.json()["id"] for r in responses}) == 1
    search = (await intake.get("/Patient", params={"identifier": "urn:mrn|race-7"})).json()
    assert search["total"] == 1
    assert search["entry"][0]["resource"]["meta"]["versionId"] == "8"


async def test_concurrent_deletes_and_updates_keep_a_consistent_history(
    outcomes: httpx.AsyncClient,
):
    created = await _create(outcomes, observation())
    oid = created["id"]
    deletes = [outcomes.delete(f"/Observation/{oid}") for _ in range(5)]
    responses = await asyncio.gather(*deletes)
    assert [r.status_code for r in responses] == [204] * 5
    versions = await _versions(outcomes, f"/Observation/{oid}")
    assert versions == [2, 1]  # exactly one deletion was recorded
    assert _event_versions(outcomes, f"Observation/{oid}") == [1, 2]
    assert (await outcomes.get(f"/Observation/{oid}")).status_code == 410


async def test_failed_writes_change_nothing(intake: httpx.AsyncClient):
    created = await _create(intake, patient())
    pid = created["id"]
    invalid = await intake.put(
        f"/Patient/{pid}", json={**created, "gender": "bogus"}, headers=FHIR_JSON
    )
    assert invalid.status_code == 422
    issue = invalid.json()["issue"][0]
    assert issue["severity"] == "error" and issue["expression"] == ["Patient.gender"]
    bad_patch = await intake.patch(
        f"/Patient/{pid}",
        json=[{"op": "replace", "path": "/birthDate", "value": "not-a-date"}],
        headers=PATCH_JSON,
    )
    assert bad_patch.status_code == 422
    missing_path = await intake.patch(
        f"/Patient/{pid}",
        json=[{"op": "remove", "path": "/maritalStatus"}],
        headers=PATCH_JSON,
    )
    assert missing_path.status_code == 422
    assert missing_path.json()["issue"][0]["severity"] == "error"
    current = (await intake.get(f"/Patient/{pid}")).json()
    assert current == created
    assert await _versions(intake, f"/Patient/{pid}") == [1]
    assert _event_versions(intake, f"Patient/{pid}") == [1]
    # The search index still describes version 1.
    assert (await intake.get("/Patient", params={"gender": "male"})).json()["total"] == 1


async def test_mixed_concurrent_traffic_never_fails_with_500(intake: httpx.AsyncClient):
    created = await _create(intake, patient())
    pid = created["id"]
    requests = []
    for n in range(30):
        kind = n % 5
        if kind == 0:
            requests.append(intake.put(f"/Patient/{pid}", json=created, headers=FHIR_JSON))
        elif kind == 1:
            requests.append(
                intake.put(
                    f"/Patient/{pid}", json=created, headers={**FHIR_JSON, "If-Match": 'W/"1"'}
                )
            )
        elif kind == 2:
            requests.append(intake.get(f"/Patient/{pid}"))
        elif kind == 3:
            requests.append(intake.get("/Patient", params={"_id": pid}))
        else:
            requests.append(
                intake.patch(
                    f"/Patient/{pid}",
                    json=[{"op": "replace", "path": "/gender", "value": "female"}],
                    headers=PATCH_JSON,
                )
            )
    responses = await asyncio.gather(*requests)
    assert all(r.status_code < 500 for r in responses), [r.text for r in responses]
    writes = [r for n, r in enumerate(responses) if n % 5 in (0, 4)]
    assert all(r.status_code == 200 for r in writes)
    guarded = [r.status_code for n, r in enumerate(responses) if n % 5 == 1]
    assert guarded.count(200) <= 1 and set(guarded) <= {200, 412}
    successes = len(writes) + guarded.count(200)
    assert sorted(await _versions(intake, f"/Patient/{pid}")) == list(range(1, successes + 2))


async def test_transactions_writing_the_same_resources_in_opposite_orders(
    outcomes: httpx.AsyncClient,
):
    first = await _create(outcomes, observation(code="44261-6"))
    second = await _create(outcomes, observation(code="70274-6"))

    def put(resource: dict, value: int) -> dict:
        body = {**resource, "valueQuantity": {**resource["valueQuantity"], "value": value}}
        return {"resource": body, "request": {"method": "PUT", "url": f"Observation/{body['id']}"}}

    def bundle(n: int) -> dict:
        pair = [put(first, n), put(second, n)]
        entries = pair if n % 2 else pair[::-1]
        return {"resourceType": "Bundle", "type": "transaction", "entry": entries}

    responses = await asyncio.gather(
        *(outcomes.post("/", json=bundle(n), headers=FHIR_JSON) for n in range(20))
    )
    assert [r.status_code for r in responses] == [200] * 20, [
        r.text for r in responses if r.status_code != 200
    ]
    for resource in (first, second):
        path = f"/Observation/{resource['id']}"
        assert sorted(await _versions(outcomes, path)) == list(range(1, 22))
    # Each transaction wrote both resources at once: their final values agree.
    values = [
        (await outcomes.get(f"/Observation/{r['id']}")).json()["valueQuantity"]["value"]
        for r in (first, second)
    ]
    assert values[0] == values[1]

    # The same with ids that do not exist yet: one transaction creates both, the rest update.
    fresh = [
        {**observation(code="44261-6"), "id": "obs-new-a"},
        {**observation(code="70274-6"), "id": "obs-new-b"},
    ]
    first, second = fresh
    responses = await asyncio.gather(
        *(outcomes.post("/", json=bundle(n), headers=FHIR_JSON) for n in range(10))
    )
    assert [r.status_code for r in responses] == [200] * 10, [
        r.text for r in responses if r.status_code != 200
    ]
    created = [
        [e["response"]["status"] for e in r.json()["entry"]].count("201 Created") for r in responses
    ]
    assert sorted(created) == [0] * 9 + [2]
    for resource in fresh:
        assert sorted(await _versions(outcomes, f"/Observation/{resource['id']}")) == list(
            range(1, 11)
        )
