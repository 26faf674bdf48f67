"""Practice-level access: a practice's token sees and writes only its own patients' data."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from shared.app import create_service_app
from shared.auth.principal import Principal
from shared.events.replica import ReplicaWriter
from shared.fhir.catalogue import resource
from shared.fhir.registry import Registry, ResourceDef
from tests.auth_support import StaffBearer, principal, token_for
from tests.conftest import BACKENDS, SERVICES, make_settings
from tests.factories import FHIR_JSON, appointment, observation, patient
from tests.fhir_asserts import assert_outcome
from tests.kafka_support import new_database, serving
from tests.search_helpers import create, include_ids, match_ids

pytestmark = BACKENDS
__all__ = ["new_database"]

A = principal(practice="Organization/a")
B = principal(practice="Organization/b")
EVERYONE = principal(practice="*")
NO_CLAIM = principal(practice=None)


async def as_(
    who: Principal | None, call: Callable[..., Awaitable[httpx.Response]], *args: Any, **kwargs: Any
) -> httpx.Response:
    """One request made by `who`, with a token that says so."""
    headers = {**kwargs.pop("headers", {}), "Authorization": f"Bearer {token_for(who)}"}
    return await call(*args, headers=headers, **kwargs)


async def status(who: Principal | None, client: httpx.AsyncClient, url: str) -> int:
    return (await as_(who, client.get, url)).status_code


async def bundle_of(
    who: Principal | None, client: httpx.AsyncClient, url: str, params: Any = None
) -> dict[str, Any]:
    response = await as_(who, client.get, url, params=params)
    assert response.status_code == 200, response.text
    return response.json()


async def ids(
    who: Principal | None, client: httpx.AsyncClient, url: str, params: Any = None
) -> list[str]:
    """The sorted match ids of a search; its total agrees with them."""
    bundle = await bundle_of(who, client, url, {**(params or {}), "_total": "accurate"})
    found = match_ids(bundle)
    assert bundle["total"] == len(found), bundle
    return sorted(found)


def patient_of(practice: str, *, via: str = "managingOrganization") -> dict[str, Any]:
    organization = {"reference": f"Organization/{practice}"}
    return patient(**{via: [organization] if via == "generalPractitioner" else organization})


def replicate(
    client: httpx.AsyncClient, res_type: str, res_id: str, version: int, body: dict[str, Any] | None
) -> None:
    """Store another service's version in this replica, as its events would."""
    context = client._transport.app.state.fhir  # type: ignore[attr-defined]
    with context.database.write() as session:
        content = None if body is None else {**body, "id": res_id}
        assert ReplicaWriter(context.store).put_version(session, res_type, res_id, version, content)


@dataclass
class Seeded:
    """At outcomes: patient pa of practice a, pb of practice b (as its GP), and their
    Observations; `mixed` is about pa but performed by pb, so it is neither's alone."""

    a_obs: list[str]
    b_obs: str
    mixed: str


async def seed(outcomes: httpx.AsyncClient) -> Seeded:
    replicate(outcomes, "Patient", "pa", 1, patient_of("a"))
    replicate(outcomes, "Patient", "pb", 1, patient_of("b", via="generalPractitioner"))
    a_obs = [await create(outcomes, observation("pa", value=v)) for v in (1, 2, 3)]
    b_obs = await create(outcomes, observation("pb"))
    mixed = await create(outcomes, observation("pa", performer=[{"reference": "Patient/pb"}]))
    return Seeded(sorted(a_obs), b_obs, mixed)


async def test_reads_are_limited_to_the_practice(outcomes: httpx.AsyncClient):
    s = await seed(outcomes)
    for url in (
        "/Patient/pa",
        f"/Observation/{s.a_obs[0]}",
        f"/Observation/{s.a_obs[0]}/_history/1",
        f"/Observation/{s.a_obs[0]}/_history",
    ):
        assert await status(A, outcomes, url) == 200, url
    hidden_from_a = ("/Patient/pb", f"/Observation/{s.b_obs}", f"/Observation/{s.mixed}")
    for base in hidden_from_a:
        for url in (base, f"{base}/_history/1", f"{base}/_history"):
            response = await as_(A, outcomes.get, url)
            assert_outcome(response, 404, "not-found")  # never a 403 that tells it exists
    for who in (EVERYONE, None):
        for url in hidden_from_a:
            assert await status(who, outcomes, url) == 200
    for url in ("/Patient/pa", f"/Observation/{s.a_obs[0]}"):
        assert await status(NO_CLAIM, outcomes, url) == 404
    assert await status(B, outcomes, f"/Observation/{s.b_obs}") == 200
    assert await status(B, outcomes, f"/Observation/{s.mixed}") == 404


async def test_search_totals_paging_and_history(outcomes: httpx.AsyncClient):
    s = await seed(outcomes)
    assert await ids(A, outcomes, "/Observation") == s.a_obs
    assert await ids(A, outcomes, "/Observation", {"patient": "Patient/pb"}) == []
    assert await ids(B, outcomes, "/Observation") == [s.b_obs]
    assert await ids(NO_CLAIM, outcomes, "/Observation") == []
    assert await ids(A, outcomes, "/Patient") == ["pa"]
    assert len(await ids(EVERYONE, outcomes, "/Observation")) == 5
    # Pages of one: the total and the `next` links count only what A may see.
    page = await bundle_of(A, outcomes, "/Observation", {"_count": "1", "_total": "accurate"})
    seen = match_ids(page)
    while next_url := next((x["url"] for x in page["link"] if x["relation"] == "next"), None):
        page = await bundle_of(A, outcomes, next_url)
        seen += match_ids(page)
    assert sorted(seen) == s.a_obs
    summary = await bundle_of(A, outcomes, "/Observation", {"_summary": "count"})
    assert summary["total"] == 3
    # Type and system history: only the versions of what A can see.
    for url in ("/Observation/_history", "/_history"):
        history = await bundle_of(A, outcomes, url)
        entries = {e["fullUrl"].rsplit("/", 1)[-1] for e in history["entry"]}
        assert entries == {*s.a_obs, "pa"} - ({"pa"} if url.startswith("/Obs") else set())
        assert history["total"] == len(entries)
    assert (await bundle_of(NO_CLAIM, outcomes, "/_history"))["total"] == 0


async def test_include_revinclude_and_everything(outcomes: httpx.AsyncClient):
    s = await seed(outcomes)
    panel = await create(
        outcomes, observation("pa", hasMember=[{"reference": f"Observation/{s.b_obs}"}])
    )
    bundle = await bundle_of(
        A, outcomes, "/Observation", {"_id": panel, "_include": "Observation:has-member"}
    )
    assert match_ids(bundle) == [panel] and include_ids(bundle) == []
    bundle = await bundle_of(
        A, outcomes, "/Observation", {"_id": s.a_obs[0], "_include": "Observation:subject"}
    )
    assert include_ids(bundle) == ["pa"]
    # pb's patient record is not included through the mixed Observation A cannot see either.
    bundle = await bundle_of(A, outcomes, "/Patient", {"_revinclude": "Observation:subject"})
    assert match_ids(bundle) == ["pa"]
    assert include_ids(bundle) == sorted([*s.a_obs, panel])
    everything = await bundle_of(A, outcomes, "/Patient/pa/$everything")
    everything_ids = [e["resource"]["id"] for e in everything["entry"]]
    assert everything_ids[0] == "pa"
    assert sorted(everything_ids[1:]) == sorted([*s.a_obs, panel])
    assert everything["total"] == len(everything_ids)
    assert await status(A, outcomes, "/Patient/pb/$everything") == 404
    assert (await bundle_of(EVERYONE, outcomes, "/Patient/pa/$everything"))["total"] == 6


async def test_observation_writes(outcomes: httpx.AsyncClient, new_database: Callable[[str], str]):
    s = await seed(outcomes)
    # A patient outcomes does not hold is looked up at intake first: here an intake that does
    # not know "nobody" either, so the answer stays the 403 of another practice's patient.
    owner = SERVICES["intake"][1](make_settings("intake", new_database("intake")))
    events = outcomes._transport.app.state.events  # type: ignore[attr-defined]
    events.http_transport, events.peer_auth = httpx.ASGITransport(app=owner), StaffBearer()

    async def send(method: str, url: str, body: Any, **headers: str) -> httpx.Response:
        return await as_(
            A, outcomes.request, method, url, json=body, headers={**FHIR_JSON, **headers}
        )

    assert (await send("POST", "/Observation", observation("pa"))).status_code == 201
    for body in (
        observation("pb"),
        observation("nobody"),  # not a patient here at all: the same answer
        observation("pa", performer=[{"reference": "Patient/pb"}]),
        {k: v for k, v in observation("pa").items() if k != "subject"},
    ):
        assert_outcome(await send("POST", "/Observation", body), 403, "forbidden")
    mine = s.a_obs[0]
    moved = observation("pb", id=mine)
    assert_outcome(await send("PUT", f"/Observation/{mine}", moved), 403, "forbidden")
    to_pb = [{"op": "replace", "path": "/subject/reference", "value": "Patient/pb"}]
    patch = {"Content-Type": "application/json-patch+json"}
    assert_outcome(await send("PATCH", f"/Observation/{mine}", to_pb, **patch), 403, "forbidden")
    theirs = s.b_obs
    for method, body, headers in (
        ("PUT", observation("pa", id=theirs), {}),
        ("PATCH", [{"op": "replace", "path": "/status", "value": "amended"}], patch),
        ("DELETE", None, {}),
    ):
        response = await send(method, f"/Observation/{theirs}", body, **headers)
        assert_outcome(response, 404, "not-found")
    assert (await outcomes.get(f"/Observation/{theirs}")).json()["status"] == "final"
    # A deleted resource: gone for whoever could see it, unknown to anyone else.
    assert (await send("DELETE", f"/Observation/{mine}", None)).status_code == 204
    assert await status(A, outcomes, f"/Observation/{mine}") == 410
    assert await status(B, outcomes, f"/Observation/{mine}") == 404
    assert await status(A, outcomes, f"/Observation/{mine}/_history") == 200
    assert await status(B, outcomes, f"/Observation/{mine}/_history") == 404
    # ...and another practice cannot bring it back to read its history.
    response = await as_(
        B, outcomes.put, f"/Observation/{mine}", json=observation("pb", id=mine), headers=FHIR_JSON
    )
    assert response.status_code == 404
    assert_outcome(
        await as_(
            NO_CLAIM, outcomes.post, "/Observation", json=observation("pa"), headers=FHIR_JSON
        ),
        403,
        "forbidden",
    )


async def test_conditional_operations_and_bundles(outcomes: httpx.AsyncClient):
    await seed(outcomes)
    tagged = {"identifier": [{"system": "urn:test", "value": "shared-id"}]}
    theirs = await create(outcomes, observation("pb", **tagged))
    condition = "identifier=urn:test|shared-id"
    # B's match is not there for A: a conditional create makes A's own ...
    response = await as_(
        A,
        outcomes.post,
        "/Observation",
        json=observation("pa", **tagged),
        headers={**FHIR_JSON, "If-None-Exist": condition},
    )
    assert response.status_code == 201
    mine = response.json()["id"]
    # ... which is then the single match A's conditional update finds (no 412 for two).
    response = await as_(
        A,
        outcomes.put,
        f"/Observation?{condition}",
        json=observation("pa", status="amended", **tagged),
        headers=FHIR_JSON,
    )
    assert response.status_code == 200 and response.json()["id"] == mine
    # A body naming B's resource, when nothing matches: not there for A either (no 400).
    response = await as_(
        A,
        outcomes.put,
        "/Observation?identifier=urn:test|nothing",
        json=observation("pa", id=theirs),
        headers=FHIR_JSON,
    )
    assert_outcome(response, 404, "not-found")
    response = await as_(A, outcomes.delete, f"/Observation?{condition}")
    assert response.status_code == 204
    assert await status(None, outcomes, f"/Observation/{theirs}") == 200
    assert await status(None, outcomes, f"/Observation/{mine}") == 410

    batch = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [
            {"request": {"method": "GET", "url": f"Observation/{theirs}"}},
            {"request": {"method": "GET", "url": "Observation?_total=accurate"}},
            {"resource": observation("pb"), "request": {"method": "POST", "url": "Observation"}},
        ],
    }
    response = await as_(A, outcomes.post, "/", json=batch, headers=FHIR_JSON)
    assert response.status_code == 200, response.text
    entries = response.json()["entry"]
    assert entries[0]["response"]["status"].startswith("404")
    assert entries[1]["resource"]["total"] == 3
    assert entries[2]["response"]["status"].startswith("403")
    transaction = {**batch, "type": "transaction", "entry": batch["entry"][2:]}
    response = await as_(A, outcomes.post, "/", json=transaction, headers=FHIR_JSON)
    assert_outcome(response, 403, "forbidden")


async def test_patient_writes_at_intake(intake: httpx.AsyncClient):
    async def post(who: Principal, body: dict[str, Any]) -> httpx.Response:
        return await as_(who, intake.post, "/Patient", json=body, headers=FHIR_JSON)

    assert (await post(A, patient_of("a"))).status_code == 201
    assert (await post(A, patient_of("a", via="generalPractitioner"))).status_code == 201
    both = patient_of("a", via="generalPractitioner") | {
        "managingOrganization": {"reference": "Organization/b"}
    }
    for body in (patient_of("b"), patient(), both):
        assert_outcome(await post(A, body), 403, "forbidden")
    assert_outcome(await post(NO_CLAIM, patient_of("a")), 403, "forbidden")
    assert (await post(EVERYONE, both)).status_code == 201
    theirs = (await post(B, patient_of("b"))).json()["id"]
    response = await as_(
        A,
        intake.put,
        f"/Patient/{theirs}",
        json=patient_of("a") | {"id": theirs},
        headers=FHIR_JSON,
    )
    assert_outcome(response, 404, "not-found")


async def test_a_moved_patient_takes_their_compartment(outcomes: httpx.AsyncClient):
    s = await seed(outcomes)
    replicate(outcomes, "Patient", "pa", 2, patient_of("b"))
    assert await ids(A, outcomes, "/Observation") == []
    assert await status(A, outcomes, "/Patient/pa") == 404
    # The mixed one now links only to b's patients: b sees it.
    assert await ids(B, outcomes, "/Observation") == sorted([*s.a_obs, s.b_obs, s.mixed])


async def test_replicas_hold_to_the_same_rule(scheduling: httpx.AsyncClient):
    replicate(scheduling, "Patient", "pa", 1, patient_of("a"))
    booked = await create(scheduling, appointment("pa"))
    assert await ids(B, scheduling, "/Patient") == []
    assert await ids(B, scheduling, "/Appointment") == []
    assert await status(B, scheduling, f"/Appointment/{booked}") == 404
    assert await ids(A, scheduling, "/Appointment") == [booked]
    # The practitioner in the Appointment does not make it anyone else's. (Another day: the
    # patient and practitioner cannot be booked twice at once.)
    later = appointment("pa", "2026-03-03T09:00:00Z")
    response = await as_(A, scheduling.post, "/Appointment", json=later, headers=FHIR_JSON)
    assert response.status_code == 201
    # A replica's own rule first: writes of replicated types go to their owner.
    response = await as_(
        A, scheduling.put, "/Patient/pa", json=patient_of("a") | {"id": "pa"}, headers=FHIR_JSON
    )
    assert response.status_code == 405


@pytest.fixture
async def catalogue(database_url: str) -> AsyncIterator[httpx.AsyncClient]:
    """A service that also serves types outside the Patient compartment."""
    registry = Registry("intake")
    registry.add(resource("Patient", owner="intake"))
    registry.add(resource("Questionnaire", owner="intake"))
    for res_type in ("Organization", "Practitioner"):
        registry.add(ResourceDef(type=res_type, params=(), owner="intake"))
    app: FastAPI = create_service_app(make_settings("intake", database_url), registry)
    async with serving(app) as client:
        yield client


async def test_no_claim_sees_only_what_is_not_patient_data(catalogue: httpx.AsyncClient):
    await create(catalogue, patient_of("a"))
    shared = [
        {"resourceType": "Organization", "name": "Practice A"},
        {"resourceType": "Practitioner", "name": [{"family": "Ng"}]},
        {"resourceType": "Questionnaire", "status": "active", "url": "http://q/phq9"},
    ]
    for body in shared:
        res_id = await create(catalogue, body)
        for who in (NO_CLAIM, B):
            assert await status(who, catalogue, f"/{body['resourceType']}/{res_id}") == 200
            assert len(await ids(who, catalogue, f"/{body['resourceType']}")) == 1
        # Writing them needs no practice either.
        response = await as_(
            NO_CLAIM, catalogue.post, f"/{body['resourceType']}", json=body, headers=FHIR_JSON
        )
        assert response.status_code == 201
    assert await ids(NO_CLAIM, catalogue, "/Patient") == []
    history = await bundle_of(NO_CLAIM, catalogue, "/_history")
    assert {e["resource"]["resourceType"] for e in history["entry"]} == {
        "Organization",
        "Practitioner",
        "Questionnaire",
    }


async def test_a_shared_patient_keeps_every_practice_it_names(intake: httpx.AsyncClient):
    both = patient_of("a", via="generalPractitioner") | {
        "managingOrganization": {"reference": "Organization/b"}
    }
    pid = (await as_(EVERYONE, intake.post, "/Patient", json=both)).json()["id"]

    async def put(who: Principal, body: dict[str, Any]) -> httpx.Response:
        return await as_(who, intake.put, f"/Patient/{pid}", json=body | {"id": pid})

    # Practice a may not drop b (b would lose the patient), nor bring in c.
    assert_outcome(await put(A, patient_of("a")), 403, "forbidden")
    with_c = both | {"managingOrganization": {"reference": "Organization/c"}}
    assert_outcome(await put(A, with_c), 403, "forbidden")
    patched = await as_(
        A,
        intake.patch,
        f"/Patient/{pid}",
        json=[{"op": "remove", "path": "/managingOrganization"}],
        headers={"Content-Type": "application/json-patch+json"},
    )
    assert_outcome(patched, 403, "forbidden")
    # It may change the rest, naming both as before.
    assert (await put(A, both | {"gender": "female"})).status_code == 200
    assert await status(B, intake, f"/Patient/{pid}") == 200
