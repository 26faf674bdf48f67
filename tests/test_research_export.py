"""Issue 11: `$research-export`, consented patients' scores as de-identified CSV, through HTTP."""

from __future__ import annotations

import asyncio
import csv
import io
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from services.outcomes.research import export as research_export
from services.outcomes.research.export import COLUMNS
from services.outcomes.research.study_id import study_id
from services.outcomes.settings import OutcomesSettings
from tests.auth_support import bearer
from tests.conftest import BACKENDS
from tests.factories import patient
from tests.fhir_asserts import assert_outcome
from tests.outcomes_support import dosed, emdr, scored
from tests.replanning_support import CONSENT_SCOPE
from tests.replicas import replicate

pytestmark = BACKENDS
KEY = "research-key-of-the-test-study-0001"
OTHER_KEY = "research-key-of-another-study-0002"
CSV_ACCEPT = {"Accept": "text/csv"}
# Distinctive strings, so that their absence from the file means something.
ALPHA, BRAVO, CHARLIE, DELTA, ECHO = (
    "patient-alpha",
    "patient-bravo",
    "patient-charlie",
    "patient-delta",
    "patient-echo",
)
FAMILY, GIVEN = "Zwanenburg", "Hieronymus"


def consent(patient_id: str, code: str = "research", **period: str) -> dict[str, Any]:
    body: dict[str, Any] = {
        "resourceType": "Consent",
        "status": "active",
        "scope": {"coding": [{"system": CONSENT_SCOPE, "code": code}]},
        "category": [{"coding": [{"system": "http://loinc.org", "code": "57016-8"}]}],
        "patient": {"reference": f"Patient/{patient_id}"},
    }
    if period:
        body["provision"] = {"type": "permit", "period": period}
    return body


def enrolled(client: httpx.AsyncClient, patient_id: str, practice: str) -> None:
    organization = {"reference": f"Organization/{practice}"}
    body = patient(FAMILY, GIVEN, managingOrganization=organization)
    body["identifier"] = [{"system": "urn:oid:2.16.840.1.113883.2.4.6.3", "value": "999911120"}]
    replicate(client, "Patient", patient_id, body)


async def seed(client: httpx.AsyncClient) -> dict[str, str]:
    """Alpha (practice a) and bravo (b) consented; charlie never; delta's consent expired;
    echo consented but has had no dose. Returns the ids of a few resources."""
    for patient_id, practice in ((ALPHA, "a"), (BRAVO, "b"), (CHARLIE, "a"), (DELTA, "a")):
        enrolled(client, patient_id, practice)
    enrolled(client, ECHO, "a")
    replicate(client, "Consent", "c-alpha", consent(ALPHA, start="2026-01-01"))
    replicate(client, "Consent", "c-bravo", consent(BRAVO))
    replicate(client, "Consent", "c-charlie", consent(CHARLIE, "treatment"))
    replicate(client, "Consent", "c-delta", consent(DELTA, end="2026-01-31"))
    replicate(client, "Consent", "c-echo", consent(ECHO))
    for patient_id in (ALPHA, BRAVO, CHARLIE, DELTA):
        dosed(client, patient_id, f"dose-{patient_id}", "2026-03-02T10:00:00Z")
    ids = {"baseline": await scored(client, ALPHA, "phq9", 18, "2026-03-01T10:00:00Z")}
    await scored(client, ALPHA, "phq9", 9, "2026-03-03T22:00:00Z")
    emdr(client, ALPHA, "appointment-alpha", "2026-03-03T10:30:00Z", f"dose-{ALPHA}", 24.5)
    encounter = {
        "resourceType": "Encounter",
        "status": "finished",
        "class": {"code": "AMB"},
        "subject": {"reference": f"Patient/{ALPHA}"},
        "appointment": [{"reference": "Appointment/appointment-alpha"}],
        "period": {"start": "2026-03-03T10:30:00Z", "end": "2026-03-03T11:30:00Z"},
    }
    replicate(client, "Encounter", "encounter-alpha", encounter)
    in_session = {"encounter": {"reference": "Encounter/encounter-alpha"}}
    ids["suds"] = await scored(client, ALPHA, "suds", 7, "2026-03-03T10:35:00Z", **in_session)
    await scored(client, BRAVO, "pcl5", 44, "2026-03-01T10:00:00Z")
    for patient_id in (CHARLIE, DELTA, ECHO):
        await scored(client, patient_id, "gad7", 12, "2026-03-01T10:00:00Z")
    return ids


async def export(client: httpx.AsyncClient, **headers: str) -> list[dict[str, str]]:
    response = await client.get("/$research-export", headers={**CSV_ACCEPT, **headers})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/csv")
    reader = csv.DictReader(io.StringIO(response.text))
    assert tuple(reader.fieldnames or ()) == COLUMNS
    return list(reader)


def by_study(rows: list[dict[str, str]]) -> dict[str, list[tuple[str, ...]]]:
    found: dict[str, list[tuple[str, ...]]] = {}
    for row in rows:
        found.setdefault(row["study_id"], []).append(tuple(row[c] for c in COLUMNS[1:]))
    return found


async def test_consented_patients_only_de_identified(
    service_client: Callable[..., httpx.AsyncClient],
):
    async with service_client("outcomes", research_key=KEY) as client:
        ids = await seed(client)
        response = await client.get("/$research-export", headers=CSV_ACCEPT)
        assert response.status_code == 200, response.text
        text = response.text
        for secret in (
            ALPHA,
            BRAVO,
            ECHO,
            FAMILY,
            GIVEN,
            "999911120",
            "Organization",
            *ids.values(),
        ):
            assert secret not in text, secret
        assert "encounter-alpha" not in text and "2026-03" not in text
        rows = by_study(await export(client))
    key = KEY.encode()
    assert rows == {
        study_id(key, ALPHA): [
            # measure, days from the first dose, value, the EMDR session's offset
            ("phq9-total", "-1.00", "18", ""),
            ("suds", "1.02", "7", "24.5"),
            ("phq9-total", "1.50", "9", ""),
        ],
        study_id(key, BRAVO): [("pcl5-total", "-1.00", "44", "")],
        # No dose yet: no day to count from.
        study_id(key, ECHO): [("gad7-total", "", "12", "")],
    }  # charlie (treatment only) and delta (research consent expired) are not in it
    assert len(study_id(key, ALPHA)) == 16


async def test_study_ids_are_stable_and_keyed(
    service_client: Callable[..., httpx.AsyncClient], monkeypatch: pytest.MonkeyPatch
):
    async with service_client("outcomes", research_key=KEY) as client:
        await seed(client)
        first, again = await export(client), await export(client)
        # Streamed one patient per read, the file is the same.
        monkeypatch.setattr(research_export, "BATCH", 1)
        assert await export(client) == first
    assert first == again
    async with service_client("outcomes", research_key=OTHER_KEY) as other:
        rekeyed = await export(other)
    assert len(rekeyed) == len(first)
    assert {r["study_id"] for r in rekeyed}.isdisjoint({r["study_id"] for r in first})
    assert [r["value"] for r in rekeyed] == [r["value"] for r in first]


async def test_practices_scopes_formats_and_the_missing_key(
    service_client: Callable[..., httpx.AsyncClient],
):
    async with service_client("outcomes", research_key=KEY) as client:
        await seed(client)
        practice_b = await export(client, **bearer(practice="Organization/b"))
        assert {r["study_id"] for r in practice_b} == {study_id(KEY.encode(), BRAVO)}
        scoped = bearer(scope="system/Observation.rs")
        assert len(await export(client, **scoped)) == 5
        response = await client.get("/$research-export", headers=bearer(scope="system/Patient.rs"))
        assert_outcome(response, 403, "forbidden")
        fhir_json = {"Accept": "application/fhir+json"}
        assert_outcome(
            await client.get("/$research-export", headers=fhir_json), 406, "not-supported"
        )
        response = await client.get("/$research-export", params={"_format": "csv"})
        assert response.status_code == 200
        response = await client.get(
            "/$research-export", params={"patient": ALPHA}, headers=CSV_ACCEPT
        )
        assert_outcome(response, 400, "invalid")
    with pytest.raises(ValidationError, match="at least 32 characters"):
        OutcomesSettings(research_key="guessable")
    async with service_client("outcomes") as unkeyed:
        response = await unkeyed.get("/$research-export", headers=CSV_ACCEPT)
        assert_outcome(response, 422, "not-supported")
        assert "OUTCOMES_RESEARCH_KEY" in response.json()["issue"][0]["diagnostics"]


async def test_the_export_is_audited_with_the_patients_it_gave_out(
    service_client: Callable[..., httpx.AsyncClient],
):
    async with service_client("outcomes", research_key=KEY) as client:
        await seed(client)
        await export(client)
        app = client._transport.app  # type: ignore[attr-defined]
        await asyncio.to_thread(app.state.audit.drain_all)
        response = await client.get("/AuditEvent", params={"subtype": "operation"})
        assert response.status_code == 200, response.text
    found = [
        {e["what"]["reference"] for e in entry["resource"]["entity"] if _is_patient(e)}
        for entry in response.json().get("entry", [])
    ]
    # One operation, naming every patient whose scores left (and only those).
    assert found == [{f"Patient/{p}" for p in (ALPHA, BRAVO, ECHO)}]


def _is_patient(entity: dict[str, Any]) -> bool:
    return entity.get("role", {}).get("code") == "1"


async def test_the_capability_statement_names_the_export_and_the_summary(outcomes):
    statement = (await outcomes.get("/metadata")).json()
    (rest,) = statement["rest"]
    assert "research-export" in [op["name"] for op in rest["operation"]]
    (patient_type,) = [r for r in rest["resource"] if r["type"] == "Patient"]
    assert "outcomes" in [op["name"] for op in patient_type["operation"]]
    definition = (await outcomes.get("/OperationDefinition/research-export")).json()
    assert definition["system"] is True
    assert [(p["name"], p["type"]) for p in definition["parameter"]] == [("return", "Binary")]
    (scope,) = definition["extension"]
    assert scope["valueString"] == "system/Observation.rs"
    outcomes_definition = (await outcomes.get("/OperationDefinition/Patient-outcomes")).json()
    assert outcomes_definition["instance"] is True
