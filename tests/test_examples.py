"""Every HL7 R4 example of an owned type is accepted and read back unchanged."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import BACKENDS, EXAMPLES
from tests.factories import FHIR_JSON
from tests.replicas import replicate

OWNER = {
    "Patient": "intake",
    "Appointment": "scheduling",
    "MedicationAdministration": "scheduling",
    # The Slot example needs its Schedule stored first: tests/test_slot_rules.py takes it.
    "Schedule": "scheduling",
    "Observation": "outcomes",
}


def _examples() -> list[Path]:
    found = [
        path
        for path in sorted(EXAMPLES.glob("*.json"))
        if json.loads(path.read_text()).get("resourceType") in OWNER
    ]
    assert len(found) >= 20, (
        f"expected the HL7 examples in tests/fixtures/fhir-examples, found {len(found)}"
    )
    return found


def _subject_patient(client, observation: dict) -> None:
    """Outcomes takes Observations of patients it knows: the example's subject goes into its
    replica first, as intake's event would put it (the HL7 Patient example of that id)."""
    patient_id = observation["subject"]["reference"].removeprefix("Patient/")
    patients = (json.loads(path.read_text()) for path in sorted(EXAMPLES.glob("patient-*.json")))
    patient = next(p for p in patients if p["id"] == patient_id)
    replicate(client, "Patient", patient_id, patient)


def _without_id_and_meta(resource: dict) -> dict:
    return {k: v for k, v in resource.items() if k not in ("id", "meta")}


@BACKENDS
@pytest.mark.parametrize("example", _examples(), ids=lambda p: p.stem)
async def test_example_round_trips(service_client, example: Path) -> None:
    original = json.loads(example.read_text())
    async with service_client(OWNER[original["resourceType"]]) as client:
        if original["resourceType"] == "Observation":
            _subject_patient(client, original)
        created = await client.post(
            f"/{original['resourceType']}", json=original, headers=FHIR_JSON
        )
        assert created.status_code == 201, created.text
        read = (await client.get(created.headers["location"])).json()
    assert _without_id_and_meta(read) == _without_id_and_meta(original)
    for key, value in (original.get("meta") or {}).items():
        if key not in ("versionId", "lastUpdated"):
            assert read["meta"][key] == value
