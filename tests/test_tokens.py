"""What a token must be to be accepted, and what discovery tells a SMART client."""

from __future__ import annotations

import base64
import time
from collections.abc import Callable

import httpx
import jwt
import orjson
import pytest

from tests.auth_support import AUDIENCE, ISSUER, mint
from tests.fhir_asserts import assert_outcome


def _unsigned(alg: str) -> str:
    def part(data: dict) -> str:
        return base64.urlsafe_b64encode(orjson.dumps(data)).rstrip(b"=").decode()

    now = int(time.time())
    claims = {"iss": ISSUER, "aud": AUDIENCE, "iat": now, "exp": now + 600, "scope": "system/*.rs"}
    return f"{part({'alg': alg, 'typ': 'JWT'})}.{part(claims)}."


def _as(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


REFUSED = {
    "alg none": lambda: _unsigned("none"),
    "HS256 with the public key as secret": lambda: jwt.encode(
        {"iss": ISSUER, "aud": AUDIENCE, "exp": int(time.time()) + 600, "iat": int(time.time())},
        "secret-anyone-could-know",
        algorithm="HS256",
    ),
    "not yet valid": lambda: mint(nbf=int(time.time()) + 3600),
    "issued in the future": lambda: mint(iat=int(time.time()) + 3600),
    "no expiry": lambda: mint(exp=None),
    "malformed": lambda: "not.a.jwt",
    "oversized": lambda: mint(padding="x" * 20_000),
    "RS256 header on an ES384 key": lambda: mint(kid="ec-1"),
}


@pytest.mark.parametrize("make", REFUSED.values(), ids=REFUSED.keys())
async def test_bad_tokens_are_401_invalid_token(intake: httpx.AsyncClient, make):
    response = await intake.get("/Patient", headers={"Authorization": f"Bearer {make()}"})
    assert_outcome(response, 401, "login")
    assert 'error="invalid_token"' in response.headers["www-authenticate"]


async def test_es384_tokens_are_accepted(intake: httpx.AsyncClient):
    token = mint(alg="ES384", kid="ec-1")
    assert (await intake.get("/Patient", headers={"Authorization": f"Bearer {token}"})).is_success


async def test_a_hostile_kid_cannot_break_the_challenge_header(intake: httpx.AsyncClient):
    token = mint(kid='x"\r\nSet-Cookie: a=1')
    response = await intake.get("/Patient", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401
    assert "set-cookie" not in response.headers
    assert response.headers["www-authenticate"].count('"') % 2 == 0


async def test_a_non_bearer_scheme_is_refused(intake: httpx.AsyncClient):
    response = await intake.get("/Patient", headers={"Authorization": "Basic dXNlcjpwYXNz"})
    assert_outcome(response, 401, "login")


async def test_without_a_configured_audience_the_listening_base_is_the_audience(
    service_client: Callable[..., httpx.AsyncClient],
):
    client = service_client("intake", auth_audience="")
    mine = mint(aud=["http://other.test/fhir", "http://127.0.0.1:8001/fhir"])
    assert (await client.get("/Patient", headers=_as(mine))).is_success
    # Never from the Host header, which the client chooses.
    theirs = mint(aud="http://evil.example/fhir")
    response = await client.get("/Patient", headers={**_as(theirs), "Host": "evil.example"})
    assert_outcome(response, 401, "login")
    await client.aclose()


async def test_a_service_without_an_issuer_refuses_to_start(
    service_client: Callable[..., httpx.AsyncClient],
):
    from shared.auth.setup import AuthConfigError

    with pytest.raises(AuthConfigError, match="INTAKE_AUTH_ISSUER"):
        service_client("intake", auth_issuer="", auth_jwks="")


async def test_the_ops_scope_is_granted_by_name_only(intake: httpx.AsyncClient):
    wildcard = mint(scope="system/*.cruds")
    response = await intake.get(
        "/../status/events", headers={"Authorization": f"Bearer {wildcard}"}
    )
    assert_outcome(response, 403, "forbidden")
    assert "system/Ops.r" in response.json()["issue"][0]["diagnostics"]
    ops = mint(scope="system/Ops.r")
    assert (
        await intake.get("/../status/events", headers={"Authorization": f"Bearer {ops}"})
    ).is_success


async def test_scopes_are_checked_per_type_and_letter(intake: httpx.AsyncClient):
    # The v1 form `.read` is read and search; a grant on another type gives nothing here.
    reader = {"Authorization": f"Bearer {mint(scope='user/Patient.read system/Observation.c')}"}
    assert (await intake.get("/Patient", headers=reader)).is_success
    assert (await intake.get("/Patient/_history", headers=reader)).is_success
    created = await intake.post("/Patient", json={"resourceType": "Patient"}, headers=reader)
    assert_outcome(created, 403, "forbidden")
    assert "system/Patient.c" in created.json()["issue"][0]["diagnostics"]


async def test_a_transaction_is_checked_entry_by_entry_before_anything_is_written(
    intake: httpx.AsyncClient,
):
    token = mint(scope="system/Patient.cruds")
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "resource": {"resourceType": "Patient"},
                "request": {"method": "POST", "url": "Patient"},
            },
            {
                "resource": {"resourceType": "Organization", "name": "X"},
                "request": {"method": "POST", "url": "Organization"},
            },
        ],
    }
    response = await intake.post("/", json=bundle, headers={"Authorization": f"Bearer {token}"})
    assert_outcome(response, 403, "forbidden")
    assert "Bundle.entry[1]" in response.text
    assert (await intake.get("/Patient")).json()["total"] == 0
    batch = {**bundle, "type": "batch"}
    answered = (
        await intake.post("/", json=batch, headers={"Authorization": f"Bearer {token}"})
    ).json()
    assert [e["response"]["status"][:3] for e in answered["entry"]] == ["201", "403"]


async def test_discovery_needs_no_token_and_names_the_token_endpoint(
    service_client: Callable[..., httpx.AsyncClient],
):
    client = service_client("intake", auth_token_endpoint="https://idp.test/token")
    bare = httpx.AsyncClient(transport=client._transport, base_url="http://testserver/fhir")
    smart = (await bare.get("/.well-known/smart-configuration")).json()
    assert smart["token_endpoint"] == "https://idp.test/token"
    assert "private_key_jwt" in smart["token_endpoint_auth_methods_supported"]
    assert "client_credentials" in smart["grant_types_supported"]
    statement = (await bare.get("/metadata")).json()
    security = statement["rest"][0]["security"]
    assert security["service"][0]["coding"][0]["code"] == "SMART-on-FHIR"
    uris = security["extension"][0]
    assert {"url": "token", "valueUri": "https://idp.test/token"} in uris["extension"]
    await bare.aclose()
    await client.aclose()


async def test_cors_allows_only_configured_origins(
    service_client: Callable[..., httpx.AsyncClient],
):
    client = service_client("intake", cors_origins=["https://app.clinic.test"])
    preflight = {
        "Origin": "https://app.clinic.test",
        "Access-Control-Request-Method": "GET",
        "Access-Control-Request-Headers": "authorization",
    }
    allowed = await client.options("/Patient", headers=preflight)
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == "https://app.clinic.test"
    other = await client.options("/Patient", headers={**preflight, "Origin": "https://evil.test"})
    assert "access-control-allow-origin" not in other.headers
    await client.aclose()


def test_the_acting_person_comes_from_the_token_only():
    from shared.auth.principal import acting_person
    from shared.fhir.errors import FHIRError
    from tests.auth_support import acting_as, principal

    with acting_as(principal(user="Practitioner/dr-1")):
        assert acting_person() == "Practitioner/dr-1"
    for nobody in (principal(), None):
        with acting_as(nobody), pytest.raises(FHIRError) as refused:
            acting_person()
        assert refused.value.status == 403


def test_practice_claims_fail_closed():
    from shared.auth.principal import practices_from_claim

    assert practices_from_claim("*") is None
    assert practices_from_claim(["Organization/a", "*"]) is None
    assert practices_from_claim("Organization/a") == frozenset({"Organization/a"})
    for missing in (None, "", "a", 7, {"x": 1}, "Organization/", ["Patient/x"]):
        assert practices_from_claim(missing) == frozenset(), missing


async def test_includes_need_the_scope_of_what_they_add(outcomes: httpx.AsyncClient):
    from tests.factories import observation
    from tests.measures_support import known_patient

    # The patient is in outcomes' replica: the untyped include below has one to leave out.
    known_patient(outcomes, "p1")
    assert (await outcomes.post("/Observation", json=observation(patient_id="p1"))).is_success
    only_patients = _as(mint(scope="system/Patient.rs"))
    refused = await outcomes.get(
        "/Patient", params={"_revinclude": "Observation:subject"}, headers=only_patients
    )
    assert_outcome(refused, 403, "forbidden")
    assert "system/Observation.r" in refused.json()["issue"][0]["diagnostics"]
    audit = await outcomes.get(
        "/Patient", params={"_revinclude": "AuditEvent:patient"}, headers=only_patients
    )
    assert_outcome(audit, 403, "forbidden")
    both = _as(mint(scope="system/Patient.r system/Observation.s"))
    allowed = await outcomes.get(
        "/Observation", params={"_include": "Observation:subject"}, headers=both
    )
    assert allowed.status_code == 200
    # Untyped, the include adds only what the caller may read.
    observations_only = _as(mint(scope="system/Observation.s"))
    found = await outcomes.get(
        "/Observation", params={"_include": "Observation:subject"}, headers=observations_only
    )
    assert found.status_code == 200
    assert {e["resource"]["resourceType"] for e in found.json()["entry"]} == {"Observation"}
    typed = await outcomes.get(
        "/Observation",
        params={"_include": "Observation:subject:Patient"},
        headers=observations_only,
    )
    assert_outcome(typed, 403, "forbidden")


async def test_an_update_that_creates_needs_create_and_a_condition_needs_search(
    intake: httpx.AsyncClient,
):
    updater = _as(mint(scope="system/Patient.u"))
    body = {"resourceType": "Patient", "id": "new-one"}
    created = await intake.put("/Patient/new-one", json=body, headers=updater)
    assert_outcome(created, 403, "forbidden")
    assert "system/Patient.c" in created.json()["issue"][0]["diagnostics"]
    assert (await intake.get("/Patient/new-one")).status_code == 404  # rolled back
    conditional = await intake.put(
        "/Patient", params={"identifier": "x|1"}, json={"resourceType": "Patient"}, headers=updater
    )
    assert_outcome(conditional, 403, "forbidden")
    assert "system/Patient.s" in conditional.json()["issue"][0]["diagnostics"]
    assert (await intake.put("/Patient/new-one", json=body)).status_code == 201
    assert (await intake.put("/Patient/new-one", json=body, headers=updater)).status_code == 200


async def test_odd_claim_types_are_refused_not_a_server_error(intake: httpx.AsyncClient):
    for scope in (5, [5], {"a": 1}):
        response = await intake.get("/Patient", headers=_as(mint(scope=scope)))
        assert_outcome(response, 403, "forbidden")
    granular = _as(mint(scope="system/Patient.rs?gender=female"))
    assert_outcome(await intake.get("/Patient", headers=granular), 403, "forbidden")
