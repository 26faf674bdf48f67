"""Issue 11: an Observation's subject is a Patient outcomes knows from its replica; one whose
event has not arrived yet is looked up at intake (its owner) once before the write is refused."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import httpx
import pytest

from tests.auth_support import StaffBearer, principal, staff_headers, token_for
from tests.conftest import BACKENDS, SERVICES, make_settings
from tests.factories import FHIR_JSON, patient
from tests.fhir_asserts import assert_outcome
from tests.kafka_support import new_database
from tests.measures_support import known_patient, score

__all__ = ["new_database"]
OWNER = "http://intake.test/fhir"


class _Counting(httpx.AsyncBaseTransport):
    """Sends every request to one app and remembers its paths."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner
        self.paths: list[str] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.paths.append(request.url.path)
        return await self.inner.handle_async_request(request)


class _Down(httpx.AsyncBaseTransport):
    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)


@dataclass
class Pair:
    intake: httpx.AsyncClient
    outcomes: httpx.AsyncClient
    calls: _Counting
    apps: list = field(default_factory=list)

    @property
    def events(self):
        return self.outcomes._transport.app.state.events  # type: ignore[attr-defined]


def _client(app) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://testserver/fhir",
        headers={"Accept": "application/fhir+json", **staff_headers()},
        timeout=60,
    )


@pytest.fixture
async def pair(database_url: str, new_database: Callable[[str], str]) -> AsyncIterator[Pair]:
    """Outcomes (on the test's backend) whose owner of Patient is an in-process intake."""
    intake_app = SERVICES["intake"][1](make_settings("intake", new_database("intake")))
    settings = make_settings("outcomes", database_url, peer_urls={"intake": OWNER})
    outcomes_app = SERVICES["outcomes"][1](settings)
    calls = _Counting(httpx.ASGITransport(app=intake_app))
    outcomes_app.state.events.http_transport = calls
    outcomes_app.state.events.peer_auth = StaffBearer()
    async with _client(intake_app) as intake, _client(outcomes_app) as outcomes:
        yield Pair(intake, outcomes, calls)
    for app in (intake_app, outcomes_app):
        app.state.fhir.database.dispose()


async def _post(client: httpx.AsyncClient, body: dict) -> httpx.Response:
    return await client.post("/Observation", json=body, headers=FHIR_JSON)


@BACKENDS
async def test_a_patient_not_replicated_yet_is_fetched_from_intake_once(pair: Pair):
    created = (await pair.intake.post("/Patient", json=patient(), headers=FHIR_JSON)).json()
    pid = created["id"]
    response = await _post(pair.outcomes, score("44261-6", 12, subject=pid))
    assert response.status_code == 201, response.text
    assert pair.calls.paths == [f"/fhir/Patient/{pid}"]
    # The patient is in the replica now, at intake's version: no second lookup.
    replica = (await pair.outcomes.get(f"/Patient/{pid}")).json()
    assert replica["meta"]["versionId"] == created["meta"]["versionId"]
    assert replica["name"] == created["name"]
    assert (await _post(pair.outcomes, score("70274-6", 3, subject=pid))).status_code == 201
    assert len(pair.calls.paths) == 1


@BACKENDS
async def test_a_patient_intake_does_not_know_is_refused_after_one_lookup(pair: Pair):
    issue = assert_outcome(
        await _post(pair.outcomes, score("44261-6", 12, subject="nobody")),
        422,
        "invalid",
        expression=True,
    )
    assert issue["expression"] == ["Observation.subject"]
    assert issue["diagnostics"] == (
        "Unknown patient Patient/nobody: neither in this service's replica nor at intake"
    )
    assert pair.calls.paths == ["/fhir/Patient/nobody"]
    # A deleted one (410 at intake) is no patient to measure either.
    pid = (await pair.intake.post("/Patient", json=patient(), headers=FHIR_JSON)).json()["id"]
    assert (await pair.intake.delete(f"/Patient/{pid}")).status_code == 204
    response = await _post(pair.outcomes, score("44261-6", 12, subject=pid))
    assert_outcome(response, 422, "invalid")
    assert pair.calls.paths[1:] == [f"/fhir/Patient/{pid}"]


async def test_a_transaction_fetches_its_missing_patients(pair: Pair):
    ids = [
        (await pair.intake.post("/Patient", json=patient(), headers=FHIR_JSON)).json()["id"]
        for _ in range(2)
    ]
    entries = [
        {
            "resource": score("44261-6", 5, subject=i),
            "request": {"method": "POST", "url": "Observation"},
        }
        for i in ids
    ]
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": entries}
    response = await pair.outcomes.post("", json=bundle, headers=FHIR_JSON)
    assert response.status_code == 200, response.text
    assert [e["response"]["status"] for e in response.json()["entry"]] == ["201 Created"] * 2
    assert sorted(pair.calls.paths) == sorted(f"/fhir/Patient/{i}" for i in ids)


async def test_an_unreachable_owner_is_a_transient_error(pair: Pair):
    pair.events.http_transport = _Down()
    response = await _post(pair.outcomes, score("44261-6", 12, subject="p9"))
    issue = assert_outcome(response, 503, "transient")
    assert "intake" in issue["diagnostics"]
    assert response.headers["Retry-After"]


async def test_a_value_out_of_range_is_refused_before_any_lookup(pair: Pair):
    response = await _post(pair.outcomes, score("44261-6", 400, subject="p9"))
    issue = assert_outcome(response, 422, "invalid")
    assert issue["expression"] == ["Observation.valueInteger"]
    assert pair.calls.paths == []


async def test_without_an_owner_url_only_replicated_patients_are_known(
    service_client: Callable[..., httpx.AsyncClient],
):
    async with service_client("outcomes", peer_urls={}) as outcomes:
        issue = assert_outcome(
            await _post(outcomes, score("44261-6", 12, subject="p1")), 422, "invalid"
        )
        assert issue["expression"] == ["Observation.subject"]
        assert (
            "no owner URL is configured (OUTCOMES_PEER_URLS has no 'intake')"
            in issue["diagnostics"]
        )
        known_patient(outcomes, "p1")
        assert (await _post(outcomes, score("44261-6", 12, subject="p1"))).status_code == 201


async def test_a_practice_caller_gets_the_lookup_too_and_the_same_403_for_others(pair: Pair):
    def of(practice: str) -> dict:
        return patient(managingOrganization={"reference": f"Organization/{practice}"})

    mine = (await pair.intake.post("/Patient", json=of("a"), headers=FHIR_JSON)).json()["id"]
    other = (await pair.intake.post("/Patient", json=of("b"), headers=FHIR_JSON)).json()["id"]
    as_a = {
        **FHIR_JSON,
        "Authorization": f"Bearer {token_for(principal(practice='Organization/a'))}",
    }

    async def post(subject: str) -> httpx.Response:
        body = score("44261-6", 12, subject=subject)
        return await pair.outcomes.post("/Observation", json=body, headers=as_a)

    assert (await post(mine)).status_code == 201
    # Another practice's patient, fetched or not known anywhere: the same 403.
    assert_outcome(await post(other), 403, "forbidden")
    assert_outcome(await post("nobody"), 403, "forbidden")
    assert pair.calls.paths == [f"/fhir/Patient/{i}" for i in (mine, other, "nobody")]


@pytest.mark.parametrize(
    "subject",
    [
        None,
        {"reference": "Group/g1"},
        {"display": "someone"},
        {"reference": "urn:uuid:8f6d8a8e-1d8e-4a57-9f0e-3a8f1c9b2d11"},
    ],
)
async def test_the_subject_must_be_a_patient_reference(outcomes: httpx.AsyncClient, subject):
    known_patient(outcomes)
    body = score("44261-6", 12)
    if subject is None:
        del body["subject"]
    else:
        body["subject"] = subject
    issue = assert_outcome(await _post(outcomes, body), 422, "invalid")
    assert issue["expression"] == ["Observation.subject"]


async def test_updates_are_checked_and_deletes_are_not(
    service_client: Callable[..., httpx.AsyncClient],
):
    async with service_client("outcomes", peer_urls={}) as outcomes:
        known_patient(outcomes, "p1")
        oid = (await _post(outcomes, score("44261-6", 12))).json()["id"]
        moved = {**score("44261-6", 12, subject="p2"), "id": oid}
        response = await outcomes.put(f"/Observation/{oid}", json=moved, headers=FHIR_JSON)
        assert_outcome(response, 422, "invalid")
        assert (await outcomes.delete(f"/Observation/{oid}")).status_code == 204
