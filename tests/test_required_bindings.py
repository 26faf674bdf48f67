"""Every required binding the server declares refuses a code outside its value set."""

from __future__ import annotations

from typing import Any

import pytest

from shared.fhir.bindings import REQUIRED_BINDINGS
from tests.factories import FHIR_JSON, appointment, medication_administration, observation, patient
from tests.measures_support import known_patient

BAD = "not-a-code"


def _patient(**extra: Any) -> tuple[str, dict[str, Any]]:
    return "intake", patient(**extra)


# (element, field) -> (service, a resource with the bad code, FHIRPath of the bad code).
CASES: dict[tuple[str, str], tuple[str, dict[str, Any], str]] = {
    ("Narrative", "status"): (
        *_patient(text={"status": BAD, "div": '<div xmlns="http://www.w3.org/1999/xhtml">x</div>'}),
        "Patient.text.status",
    ),
    ("Identifier", "use"): (
        *_patient(identifier=[{"use": BAD, "value": "1"}]),
        "Patient.identifier[0].use",
    ),
    ("HumanName", "use"): (*_patient(name=[{"use": BAD, "family": "X"}]), "Patient.name[0].use"),
    ("ContactPoint", "system"): (
        *_patient(telecom=[{"system": BAD, "value": "1"}]),
        "Patient.telecom[0].system",
    ),
    ("ContactPoint", "use"): (
        *_patient(telecom=[{"system": "phone", "use": BAD, "value": "1"}]),
        "Patient.telecom[0].use",
    ),
    ("Address", "use"): (*_patient(address=[{"use": BAD, "city": "X"}]), "Patient.address[0].use"),
    ("Address", "type"): (
        *_patient(address=[{"type": BAD, "city": "X"}]),
        "Patient.address[0].type",
    ),
    ("Patient", "gender"): (*_patient(gender=BAD), "Patient.gender"),
    ("PatientContact", "gender"): (
        *_patient(contact=[{"gender": BAD, "name": {"family": "X"}}]),
        "Patient.contact[0].gender",
    ),
    ("PatientLink", "type"): (
        *_patient(link=[{"type": BAD, "other": {"reference": "Patient/x"}}]),
        "Patient.link[0].type",
    ),
    ("Quantity", "comparator"): (
        "outcomes",
        # A code outcomes does not check: a PHQ-9 would need its {score} unit as well.
        observation(code="2339-0", valueQuantity={"value": 1, "comparator": BAD}),
        "Observation.valueQuantity.comparator",
    ),
    ("TimingRepeat", "durationUnit"): (
        "outcomes",
        {
            **observation(),
            "effectiveDateTime": None,
            "effectiveTiming": {"repeat": {"duration": 1, "durationUnit": BAD}},
        },
        "Observation.effectiveTiming.repeat.durationUnit",
    ),
    ("TimingRepeat", "periodUnit"): (
        "outcomes",
        {
            **observation(),
            "effectiveDateTime": None,
            "effectiveTiming": {"repeat": {"period": 1, "periodUnit": BAD}},
        },
        "Observation.effectiveTiming.repeat.periodUnit",
    ),
    ("Observation", "status"): ("outcomes", observation(status=BAD), "Observation.status"),
    ("Appointment", "status"): (
        "scheduling",
        {**appointment(), "status": BAD},
        "Appointment.status",
    ),
    ("AppointmentParticipant", "required"): (
        "scheduling",
        {
            **appointment(),
            "participant": [
                {"actor": {"reference": "Patient/p1"}, "status": "accepted", "required": BAD}
            ],
        },
        "Appointment.participant[0].required",
    ),
    ("AppointmentParticipant", "status"): (
        "scheduling",
        {**appointment(), "participant": [{"actor": {"reference": "Patient/p1"}, "status": BAD}]},
        "Appointment.participant[0].status",
    ),
    ("MedicationAdministration", "status"): (
        "scheduling",
        {**medication_administration(), "status": BAD},
        "MedicationAdministration.status",
    ),
}


def test_every_declared_binding_has_a_case():
    # A binding added to the table without a case here fails this test.
    assert set(CASES) == set(REQUIRED_BINDINGS)


def _clean(resource: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in resource.items() if v is not None}


@pytest.mark.parametrize("binding", sorted(CASES), ids=lambda b: ".".join(b))
async def test_a_code_outside_a_required_binding_is_422_naming_the_element(
    binding: tuple[str, str], service_client
):
    service, resource, path = CASES[binding]
    async with service_client(service) as client:
        if service == "outcomes":
            known_patient(client, "p1")  # as intake's event would: Observations need it
        bad = await client.post(
            f"/{resource['resourceType']}", json=_clean(resource), headers=FHIR_JSON
        )
        assert bad.status_code == 422, bad.text
        outcome = bad.json()
        assert outcome["resourceType"] == "OperationOutcome"
        assert path in [e for i in outcome["issue"] for e in i.get("expression", [])]
        # The same resource with a valid code from the value set is accepted.
        good_code = sorted(REQUIRED_BINDINGS[binding])[0]
        fixed = _clean(_replace(resource, BAD, good_code))
        good = await client.post(f"/{resource['resourceType']}", json=fixed, headers=FHIR_JSON)
        assert good.status_code == 201, good.text
        listing = await client.get(f"/{resource['resourceType']}", params={"_summary": "count"})
        assert listing.json()["total"] == 1  # the refused write left nothing


def _replace(node: Any, old: str, new: str) -> Any:
    if isinstance(node, dict):
        return {k: _replace(v, old, new) for k, v in node.items()}
    if isinstance(node, list):
        return [_replace(v, old, new) for v in node]
    return new if node == old else node
