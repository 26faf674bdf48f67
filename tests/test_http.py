"""HTTP behaviour EHR clients check first: formats, error shapes, limits, metadata, proxies."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from tests.conftest import BACKENDS
from tests.factories import FHIR_JSON, patient


def _outcome(response: httpx.Response) -> dict:
    body = response.json()
    assert body["resourceType"] == "OperationOutcome"
    for item in body["issue"]:
        assert {"severity", "code", "diagnostics"} <= set(item)
    return body


@BACKENDS
async def test_unparseable_json_is_400(intake: httpx.AsyncClient) -> None:
    response = await intake.post("/Patient", content=b"{not json", headers=FHIR_JSON)
    assert response.status_code == 400
    assert "not valid JSON" in _outcome(response)["issue"][0]["diagnostics"]


async def test_invalid_resource_is_422_naming_the_field(intake: httpx.AsyncClient) -> None:
    response = await intake.post(
        "/Patient", json=patient(birthDate="1974-13-45"), headers=FHIR_JSON
    )
    assert response.status_code == 422
    assert _outcome(response)["issue"][0]["expression"] == ["Patient.birthDate"]
    unknown = await intake.post("/Patient", json=patient(shoeSize=42), headers=FHIR_JSON)
    assert unknown.status_code == 422
    assert _outcome(unknown)["issue"][0]["expression"] == ["Patient.shoeSize"]
    nested = await intake.post(
        "/Patient", json=patient(contact=[{"gender": "bogus"}]), headers=FHIR_JSON
    )
    assert nested.status_code == 422
    assert _outcome(nested)["issue"][0]["expression"] == ["Patient.contact[0].gender"]


async def test_required_binding_codes_are_checked(outcomes: httpx.AsyncClient) -> None:
    body = {
        "resourceType": "Observation",
        "status": "bogus",
        "code": {"text": "PHQ-9"},
    }
    response = await outcomes.post("/Observation", json=body, headers=FHIR_JSON)
    assert response.status_code == 422
    assert _outcome(response)["issue"][0]["expression"] == ["Observation.status"]


async def test_wrong_resource_type_for_endpoint_is_400(intake: httpx.AsyncClient) -> None:
    response = await intake.post(
        "/Patient", json={"resourceType": "Observation"}, headers=FHIR_JSON
    )
    assert response.status_code == 400
    assert _outcome(response)["issue"][0]["expression"] == ["resourceType"]


async def test_content_types(intake: httpx.AsyncClient) -> None:
    as_json = await intake.post(
        "/Patient", json=patient(), headers={"Content-Type": "application/json"}
    )
    assert as_json.status_code == 201
    xml = await intake.post(
        "/Patient", content=b"<Patient/>", headers={"Content-Type": "application/fhir+xml"}
    )
    assert xml.status_code == 415
    _outcome(xml)
    none = await intake.post("/Patient", content=b"{}", headers={"Content-Type": "text/plain"})
    assert none.status_code == 415


async def test_xml_is_refused_with_406_and_json_formats_accepted(
    intake: httpx.AsyncClient,
) -> None:
    xml = await intake.get("/metadata", headers={"Accept": "application/fhir+xml"})
    assert xml.status_code == 406
    _outcome(xml)
    assert (await intake.get("/metadata", params={"_format": "xml"})).status_code == 406
    for fmt in ("json", "application/fhir+json", "application/json"):
        assert (await intake.get("/metadata", params={"_format": fmt})).status_code == 200
    for accept in ("application/json", "*/*", "application/fhir+json;q=0.9, text/html"):
        assert (await intake.get("/metadata", headers={"Accept": accept})).status_code == 200


async def test_body_over_the_limit_is_413(service_client) -> None:
    async with service_client("intake", max_body_bytes=2048) as client:
        big = patient(text={"status": "generated", "div": "<div>" + "x" * 5000 + "</div>"})
        response = await client.post("/Patient", json=big, headers=FHIR_JSON)
        assert response.status_code == 413
        _outcome(response)
        assert (await client.get("/Patient")).json()["total"] == 0


async def test_unknown_type_and_id(intake: httpx.AsyncClient) -> None:
    unknown_type = await intake.get("/Observation/1")
    assert unknown_type.status_code == 404
    _outcome(unknown_type)
    unknown_id = await intake.get("/Patient/does-not-exist")
    assert unknown_id.status_code == 404
    assert _outcome(unknown_id)["issue"][0]["code"] == "not-found"
    wrong_method = await intake.post("/metadata", json={}, headers=FHIR_JSON)
    assert wrong_method.status_code == 405
    _outcome(wrong_method)


async def test_malformed_if_match_is_400(intake: httpx.AsyncClient) -> None:
    created = (await intake.post("/Patient", json=patient(), headers=FHIR_JSON)).json()
    response = await intake.put(
        f"/Patient/{created['id']}", json=created, headers={**FHIR_JSON, "If-Match": "garbage"}
    )
    assert response.status_code == 400
    assert _outcome(response)["issue"][0]["expression"] == ["If-Match"]


async def test_capability_statement_reflects_registrations(
    intake: httpx.AsyncClient, scheduling: httpx.AsyncClient
) -> None:
    statement = (await intake.get("/metadata")).json()
    assert statement["resourceType"] == "CapabilityStatement"
    assert statement["fhirVersion"] == "4.0.1"
    assert "application/fhir+json" in statement["format"]
    rest = statement["rest"][0]
    # Every service also serves its own audit trail, read-only.
    assert [r["type"] for r in rest["resource"]] == [
        "Patient",
        "Organization",
        "ServiceRequest",
        "Questionnaire",
        "CodeSystem",
        "QuestionnaireResponse",
        "DetectedIssue",
        "Consent",
        "EpisodeOfCare",
        "AuditEvent",
    ]
    audit_entry = rest["resource"][-1]
    assert {i["code"] for i in audit_entry["interaction"]} == {
        "read",
        "vread",
        "history-instance",
        "history-type",
        "search-type",
    }
    patient_entry = rest["resource"][0]
    assert {i["code"] for i in patient_entry["interaction"]} == {
        "read",
        "vread",
        "update",
        "patch",
        "delete",
        "history-instance",
        "history-type",
        "create",
        "search-type",
    }
    names = {p["name"] for p in patient_entry["searchParam"]}
    assert {
        "_id",
        "_lastUpdated",
        "identifier",
        "name",
        "family",
        "given",
        "birthdate",
        "gender",
        "general-practitioner",
        "organization",
    } <= names
    assert patient_entry["versioning"] == "versioned-update"
    assert patient_entry["conditionalCreate"] is True
    assert patient_entry["updateCreate"] is True
    assert {i["code"] for i in rest["interaction"]} >= {"transaction", "batch"}
    scheduled = (await scheduling.get("/metadata")).json()
    by_type = {r["type"]: r for r in scheduled["rest"][0]["resource"]}
    assert sorted(by_type) == [
        "Appointment",
        "AuditEvent",
        "CarePlan",
        "CodeSystem",
        "Consent",
        "DetectedIssue",
        "Encounter",
        "EpisodeOfCare",
        "Location",
        "MedicationAdministration",
        "Observation",
        "Patient",
        "Practitioner",
        "PractitionerRole",
        "QuestionnaireResponse",
        "Schedule",
        "Slot",
    ]
    replica = {i["code"] for i in by_type["Patient"]["interaction"]}
    assert replica == {"read", "vread", "search-type", "history-instance", "history-type"}
    assert "intake" in by_type["Patient"]["documentation"]
    for res_type in ("EpisodeOfCare", "Consent", "QuestionnaireResponse", "Observation"):
        assert {i["code"] for i in by_type[res_type]["interaction"]} == replica


async def test_replicated_types_refuse_writes_naming_the_owner(
    scheduling: httpx.AsyncClient,
) -> None:
    for method, path in (
        ("POST", "/Patient"),
        ("PUT", "/Patient/p1"),
        ("DELETE", "/Patient/p1"),
        ("PATCH", "/Patient/p1"),
    ):
        response = await scheduling.request(method, path, json=patient(), headers=FHIR_JSON)
        assert response.status_code == 405, (method, response.text)
        assert "intake" in _outcome(response)["issue"][0]["diagnostics"]


async def test_forwarded_headers_are_ignored_unless_from_a_trusted_proxy(
    intake: httpx.AsyncClient,
) -> None:
    # The in-process client comes from 127.0.0.1, which this service does not trust.
    headers = {**FHIR_JSON, "X-Forwarded-Host": "attacker.example", "X-Forwarded-Proto": "https"}
    created = await intake.post("/Patient", json=patient(), headers=headers)
    assert created.headers["location"].startswith("http://testserver/fhir/Patient/")


async def test_forwarded_headers_shape_absolute_urls(
    service_client: Callable[..., httpx.AsyncClient],
) -> None:
    intake = service_client("intake", trusted_proxies=["127.0.0.0/8"])
    headers = {
        **FHIR_JSON,
        "X-Forwarded-Proto": "https",
        "X-Forwarded-Host": "ehr.example.org",
        "X-Forwarded-Prefix": "/intake",
    }
    created = await intake.post("/Patient", json=patient(), headers=headers)
    pid = created.json()["id"]
    assert created.headers["location"] == (
        f"https://ehr.example.org/intake/fhir/Patient/{pid}/_history/1"
    )
    search = (await intake.get("/Patient", headers=headers)).json()
    assert search["entry"][0]["fullUrl"] == f"https://ehr.example.org/intake/fhir/Patient/{pid}"
    assert search["link"][0]["url"].startswith("https://ehr.example.org/intake/fhir/Patient")
    hostile = await intake.post(
        "/Patient",
        json=patient(),
        headers={**FHIR_JSON, "X-Forwarded-Host": "evil\r\nSet-Cookie: x=1"},
    )
    assert hostile.status_code == 201
    assert hostile.headers["location"].startswith("http://testserver/fhir/Patient/")


@pytest.mark.parametrize("path", ["/healthz", "/readyz"])
async def test_health_endpoints(intake: httpx.AsyncClient, path: str) -> None:
    response = await intake.get(f"http://testserver{path}")
    assert response.status_code == 200
    assert response.json()["status"] == "ok"


async def test_bundle_posted_to_the_base_without_a_slash(intake: httpx.AsyncClient) -> None:
    bundle = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [{"request": {"method": "GET", "url": "Patient?_count=1"}}],
    }
    response = await intake.post("http://testserver/fhir", json=bundle, headers=FHIR_JSON)
    assert response.status_code == 200
    assert response.json()["type"] == "batch-response"
    strict = await intake.post(
        "http://testserver/fhir",
        json={**bundle, "entry": [{"request": {"method": "GET", "url": "Patient?bogus=1"}}]},
        headers={**FHIR_JSON, "Prefer": "handling=strict"},
    )
    assert strict.json()["entry"][0]["response"]["status"].startswith("400")


@pytest.mark.parametrize("suffix", ["/", "/{id}/", "/{id}/_history/", "/../metadata/"])
async def test_a_trailing_slash_is_answered_in_place_never_redirected(
    intake: httpx.AsyncClient, suffix: str
) -> None:
    created = await intake.post("/Patient", json=patient(), headers=FHIR_JSON)
    path = "/Patient" + suffix.format(id=created.json()["id"])
    response = await intake.get(path, headers={"Host": "attacker.example"})
    # A redirect would send the client to a URL built from its own Host header.
    assert response.status_code == 404
    assert "location" not in response.headers
    _outcome(response)
