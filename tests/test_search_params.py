"""FHIR R4 search parameter types and modifiers, per resource type, on SQLite and PostgreSQL."""

from __future__ import annotations

import httpx
import pytest

from tests.conftest import BACKENDS
from tests.factories import FHIR_JSON, appointment, medication_administration, observation, patient
from tests.factories import observation as make_observation
from tests.measures_support import known_patient
from tests.search_helpers import bad, create, found

pytestmark = BACKENDS

MRN = "urn:oid:1.2.36.146.595.217.0.1"
NHS = "https://fhir.nhs.uk/Id/nhs-number"
GENDER = "http://hl7.org/fhir/administrative-gender"
LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"


# ---- Patient: tokens, strings, dates, references ------------------------------------------
async def test_patient_token_forms_and_id(intake: httpx.AsyncClient):
    a = await create(intake, patient(identifier=[{"system": MRN, "value": "123"}]))
    b = await create(intake, patient(gender="female", identifier=[{"system": NHS, "value": "123"}]))
    c = await create(intake, patient(gender="other", identifier=[{"value": "555"}]))
    no_gender = patient()
    del no_gender["gender"]
    d = await create(intake, no_gender)

    assert await found(intake, "/Patient", {"identifier": f"{MRN}|123"}) == [a]
    assert await found(intake, "/Patient", {"identifier": "123"}) == sorted([a, b])
    assert await found(intake, "/Patient", {"identifier": f"{NHS}|"}) == [b]
    assert await found(intake, "/Patient", {"identifier": "|555"}) == [c]
    assert await found(intake, "/Patient", {"identifier": "|123"}) == []
    assert await found(intake, "/Patient", {"identifier": f"{MRN}|555"}) == []
    assert await found(intake, "/Patient", {"gender": "female"}) == [b]
    assert await found(intake, "/Patient", {"gender": f"{GENDER}|female"}) == [b]
    # :not also matches resources that have no value at all.
    assert await found(intake, "/Patient", {"gender:not": "male"}) == sorted([b, c, d])
    assert await found(intake, "/Patient", {"gender:not": "male,female"}) == sorted([c, d])
    assert await found(intake, "/Patient", {"_id": a}) == [a]
    assert await found(intake, "/Patient", {"_id": f"{a},{c},nobody"}) == sorted([a, c])
    assert await found(intake, "/Patient", {"_id:not": a}) == sorted([b, c, d])


async def test_patient_strings_default_exact_contains(intake: httpx.AsyncClient):
    chalmers = await create(intake, patient("Chalmers", "Peter"))
    mueller = await create(intake, patient("Müller", "Jim"))
    windsor = await create(
        intake,
        patient(
            "Windsor",
            "Elizabeth",
            name=[{"family": "Windsor", "given": ["Elizabeth", "Alexandra"], "prefix": ["Ms"]}],
        ),
    )

    # Default: starts-with, ignoring case and accents.
    assert await found(intake, "/Patient", {"family": "cha"}) == [chalmers]
    assert await found(intake, "/Patient", {"family": "CHALMERS"}) == [chalmers]
    assert await found(intake, "/Patient", {"family": "muller"}) == [mueller]
    assert await found(intake, "/Patient", {"family": "MÜL"}) == [mueller]
    assert await found(intake, "/Patient", {"family": "halmers"}) == []
    assert await found(intake, "/Patient", {"given": "alex"}) == [windsor]
    assert await found(intake, "/Patient", {"name": "pet"}) == [chalmers]
    assert await found(intake, "/Patient", {"name": "wind"}) == [windsor]
    assert await found(intake, "/Patient", {"name": "ms"}) == [windsor]
    # :exact is case- and accent-sensitive and whole-value.
    assert await found(intake, "/Patient", {"family:exact": "Müller"}) == [mueller]
    assert await found(intake, "/Patient", {"family:exact": "müller"}) == []
    assert await found(intake, "/Patient", {"family:exact": "Chalm"}) == []
    # :contains finds the text anywhere, still folded.
    assert await found(intake, "/Patient", {"family:contains": "LME"}) == [chalmers]
    assert await found(intake, "/Patient", {"name:contains": "xand"}) == [windsor]
    # LIKE wildcards in the search value are literal.
    assert await found(intake, "/Patient", {"family": "%"}) == []
    assert await found(intake, "/Patient", {"family:contains": "_"}) == []


async def test_patient_birthdate_prefixes_and_partial_dates(intake: httpx.AsyncClient):
    d1974 = await create(intake, patient(birthDate="1974-12-25"))
    d1980 = await create(intake, patient(birthDate="1980-06-15"))
    y1980 = await create(intake, patient(birthDate="1980"))  # a partial date: the whole year
    d1990 = await create(intake, patient(birthDate="1990-01-01"))

    async def birth(value: str) -> list[str]:
        return await found(intake, "/Patient", {"birthdate": value})

    assert await birth("1980") == sorted([d1980, y1980])
    assert await birth("eq1980") == sorted([d1980, y1980])
    assert await birth("1980-06") == [d1980]
    assert await birth("1980-06-15") == [d1980]
    assert await birth("ne1980") == sorted([d1974, d1990])
    assert await birth("gt1980-06-15") == sorted([y1980, d1990])  # the year 1980 goes past June
    assert await birth("lt1980-06-15") == sorted([d1974, y1980])
    assert await birth("ge1980-06-15") == sorted([d1980, y1980, d1990])
    assert await birth("le1974-12-25") == [d1974]
    assert await birth("sa1980") == [d1990]
    assert await birth("eb1980") == [d1974]
    assert await birth("ap1980-06-15") == sorted([d1980, y1980])
    assert await birth("1974-12-25T00:00:00Z") == []  # a day is not within one second
    assert await birth("ge1974-12-25T12:00:00Z") == sorted([d1974, d1980, y1980, d1990])
    # Comma is OR, a repeated parameter is AND.
    assert await found(intake, "/Patient", {"birthdate": "1974,1990"}) == sorted([d1974, d1990])
    assert await found(
        intake, "/Patient", [("birthdate", "ge1975"), ("birthdate", "lt1990")]
    ) == sorted([d1980, y1980])


async def test_patient_references_in_every_form(intake: httpx.AsyncClient):
    a = await create(
        intake,
        patient(
            generalPractitioner=[{"reference": "Practitioner/dr1"}],
            managingOrganization={"reference": "Organization/org1"},
        ),
    )
    b = await create(
        intake,
        patient(
            generalPractitioner=[{"reference": "Organization/dr1"}],
            managingOrganization={"reference": "http://ehr.example.org/fhir/Organization/org2"},
        ),
    )
    c = await create(intake, patient())

    gp = "general-practitioner"
    assert await found(intake, "/Patient", {gp: "dr1"}) == sorted([a, b])
    assert await found(intake, "/Patient", {gp: "Practitioner/dr1"}) == [a]
    assert await found(intake, "/Patient", {gp: "http://testserver/fhir/Practitioner/dr1"}) == [a]
    assert await found(intake, "/Patient", {f"{gp}:Practitioner": "dr1"}) == [a]
    assert await found(intake, "/Patient", {f"{gp}:Organization": "dr1"}) == [b]
    assert await found(intake, "/Patient", {gp: "Practitioner/dr2"}) == []
    assert await found(intake, "/Patient", {"organization": "org1"}) == [a]
    assert await found(intake, "/Patient", {"organization": "Organization/org2"}) == [b]
    assert await found(intake, "/Patient", {"organization": "org1,org2"}) == sorted([a, b])
    assert await found(intake, "/Patient", {"organization:missing": "true"}) == [c]
    assert await found(intake, "/Patient", {"organization:missing": "false"}) == sorted([a, b])
    await bad(
        intake, "/Patient", {"organization:Practitioner": "org1"}, "organization:Practitioner"
    )


async def test_missing_modifier_on_every_type(intake: httpx.AsyncClient):
    bare = {"resourceType": "Patient", "active": True}
    empty = await create(intake, bare)
    full = await create(intake, patient(identifier=[{"system": MRN, "value": "1"}]))
    for name in ("birthdate", "identifier", "family", "name", "gender"):
        assert await found(intake, "/Patient", {f"{name}:missing": "true"}) == [empty], name
        assert await found(intake, "/Patient", {f"{name}:missing": "false"}) == [full], name
    await bad(intake, "/Patient", {"gender:missing": "maybe"}, "gender:missing")


async def test_deleted_never_match_and_updated_match_new_values(intake: httpx.AsyncClient):
    kept = await create(intake, patient("Keep"))
    dropped = await create(intake, patient("Keep"))
    changed = await create(intake, patient("Before"))
    assert (await intake.delete(f"/Patient/{dropped}")).status_code == 204
    body = (await intake.get(f"/Patient/{changed}")).json()
    body["name"] = [{"family": "After", "given": ["Peter"]}]
    assert (
        await intake.put(f"/Patient/{changed}", json=body, headers=FHIR_JSON)
    ).status_code == 200

    assert await found(intake, "/Patient", {"family": "keep"}) == [kept]
    assert await found(intake, "/Patient", {"_id": dropped}) == []
    assert await found(intake, "/Patient", {"family:missing": "false"}) == sorted([kept, changed])
    assert await found(intake, "/Patient", {"family": "before"}) == []
    assert await found(intake, "/Patient", {"family": "after"}) == [changed]
    assert await found(intake, "/Patient", {}) == sorted([kept, changed])


async def test_last_updated_prefixes(intake: httpx.AsyncClient):
    first = (await intake.post("/Patient", json=patient(), headers=FHIR_JSON)).json()
    second = (await intake.post("/Patient", json=patient(), headers=FHIR_JSON)).json()
    t1, t2 = first["meta"]["lastUpdated"], second["meta"]["lastUpdated"]
    assert t1 < t2
    a, b = first["id"], second["id"]

    async def updated(value: str) -> list[str]:
        return await found(intake, "/Patient", {"_lastUpdated": value})

    assert await updated(t1) == [a]
    assert await updated(f"ge{t2}") == [b]
    assert await updated(f"gt{t1}") == [b]
    assert await updated(f"lt{t2}") == [a]
    assert await updated(f"le{t2}") == sorted([a, b])
    assert await updated(f"ne{t1}") == [b]
    assert await updated("gt2000-01-01") == sorted([a, b])
    assert await updated("2999") == []
    assert await updated("lt2000") == []


# ---- Appointment ----------------------------------------------------------------------------
async def test_appointment_parameters(scheduling: httpx.AsyncClient):
    a = await create(
        scheduling,
        {
            **appointment("p1", "2026-03-02T09:00:00Z"),
            "serviceType": [{"coding": [{"system": "urn:svc", "code": "emdr"}]}],
            "appointmentType": {"coding": [{"system": "urn:appt", "code": "FOLLOWUP"}]},
        },
    )
    b = await create(
        scheduling,
        {
            **appointment("p2", "2026-04-10T09:00:00Z"),
            "status": "cancelled",
            "serviceType": [{"coding": [{"system": "urn:svc", "code": "ketamine"}]}],
            "appointmentType": {"coding": [{"system": "urn:appt", "code": "ROUTINE"}]},
        },
    )
    c_body = appointment("p1", "2026-05-01T09:00:00Z")
    c_body["participant"] = [{"actor": {"reference": "Location/room1"}, "status": "accepted"}]
    c_body["participant"] += [
        {"actor": {"reference": "Practitioner/dr2"}, "status": "accepted"},
        {"actor": {"reference": "kid1", "type": "Patient"}, "status": "accepted"},
    ]
    c = await create(scheduling, c_body)

    async def appts(params: dict[str, str]) -> list[str]:
        return await found(scheduling, "/Appointment", params)

    assert await appts({"patient": "p1"}) == [a]
    assert await appts({"patient": "Patient/p2"}) == [b]
    assert await appts({"patient": "dr1"}) == []  # dr1 is a Practitioner, not a Patient
    assert await appts({"practitioner": "dr1"}) == sorted([a, b])
    assert await appts({"practitioner": "Practitioner/dr2"}) == [c]
    assert await appts({"actor": "Location/room1"}) == [c]
    assert await appts({"patient": "Patient/kid1"}) == [c]  # typed by Reference.type
    assert await appts({"actor:Location": "kid1"}) == []
    assert await appts({"actor": "Patient/p1"}) == [a]
    assert await appts({"actor:Practitioner": "dr1"}) == sorted([a, b])
    assert await appts({"date": "2026-03"}) == [a]
    assert await appts({"date": "ge2026-04-01"}) == sorted([b, c])
    assert await appts({"date": "lt2026-04-10T09:00:00Z"}) == [a]
    assert await appts({"status": "booked"}) == sorted([a, c])
    assert await appts({"status": "booked,cancelled"}) == sorted([a, b, c])
    assert await appts({"status:not": "booked"}) == [b]
    assert await appts({"service-type": "urn:svc|emdr"}) == [a]
    assert await appts({"service-type": "ketamine"}) == [b]
    assert await appts({"service-type:missing": "true"}) == [c]
    assert await appts({"appointment-type": "urn:appt|ROUTINE"}) == [b]
    assert await appts({"appointment-type": "urn:svc|ROUTINE"}) == []


# ---- MedicationAdministration ---------------------------------------------------------------
async def test_medication_administration_parameters(scheduling: httpx.AsyncClient):
    a = await create(
        scheduling,
        {
            **medication_administration("p1"),
            "performer": [{"actor": {"reference": "Practitioner/dr1"}}],
        },
    )
    b_body = medication_administration("p2")
    del b_body["effectiveDateTime"]
    b_body["effectivePeriod"] = {"start": "2026-03-05T10:00:00Z", "end": "2026-03-05T10:40:00Z"}
    b_body["status"] = "in-progress"
    b_body["medicationCodeableConcept"] = {"coding": [{"system": RXNORM, "code": "1234"}]}
    b = await create(scheduling, b_body)
    group = {**medication_administration("g1"), "subject": {"reference": "Group/g1"}}
    g = await create(scheduling, group)

    async def meds(params: dict[str, str]) -> list[str]:
        return await found(scheduling, "/MedicationAdministration", params)

    assert await meds({"patient": "p1"}) == [a]
    assert await meds({"patient": "g1"}) == []
    assert await meds({"subject": "Patient/p2"}) == [b]
    assert await meds({"subject": "Group/g1"}) == [g]
    assert await meds({"subject:Group": "g1"}) == [g]
    assert await meds({"effective-time": "2026-03-05"}) == [b]
    assert await meds({"effective-time": "2026-03-05T10:20:00Z"}) == []  # period not within
    assert await meds({"effective-time": "ap2020-01-01"}) == []
    assert await meds({"effective-time": "gt2026-03-02"}) == [b]
    assert await meds({"effective-time": "le2026-03-01T09:00:00Z"}) == sorted([a, g])
    assert await meds({"status": "completed"}) == sorted([a, g])
    assert await meds({"status": "in-progress"}) == [b]
    assert await meds({"code": f"{RXNORM}|6130"}) == sorted([a, g])
    assert await meds({"code": "1234"}) == [b]
    assert await meds({"code": f"{LOINC}|1234"}) == []
    assert await meds({"performer": "Practitioner/dr1"}) == [a]
    assert await meds({"performer:missing": "true"}) == sorted([b, g])


# ---- Observation ----------------------------------------------------------------------------
@pytest.fixture
def outcomes(outcomes: httpx.AsyncClient) -> httpx.AsyncClient:
    """Outcomes knowing the patients of these Observations, as intake's events would."""
    for patient_id in ("p1", "p2", "p3"):
        known_patient(outcomes, patient_id)
    return outcomes


async def test_observation_token_reference_and_date(outcomes: httpx.AsyncClient):
    a = await create(outcomes, observation("p1", "44261-6", 12, "2026-03-01T10:00:00Z"))
    b = await create(outcomes, observation("p1", "89204-2", 30, "2026-01-15T08:30:00+02:00"))
    c = await create(
        outcomes,
        {
            **observation("p2", "44261-6", 5, "2025-12-31T23:30:00-05:00"),
            "status": "preliminary",
            "category": [{"coding": [{"system": "urn:cat", "code": "therapy"}]}],
        },
    )
    # Outcomes takes Observations of known patients only: subjects of other types are
    # searched on MedicationAdministration above.
    g = await create(outcomes, observation("p3"))

    async def obs(params: object) -> list[str]:
        return await found(outcomes, "/Observation", params)

    assert await obs({"patient": "p1"}) == sorted([a, b])
    assert await obs({"subject": "Patient/p2"}) == [c]
    assert await obs({"subject": "http://testserver/fhir/Patient/p2"}) == [c]
    assert await obs({"subject:Patient": "p1"}) == sorted([a, b])
    assert await obs({"subject": "Patient/p3"}) == [g]
    assert await obs({"subject": "Group/p3"}) == []
    assert await obs({"code": f"{LOINC}|44261-6"}) == sorted([a, c, g])
    assert await obs({"code": "89204-2"}) == [b]
    assert await obs({"code": f"{LOINC}|"}) == sorted([a, b, c, g])
    assert await obs({"code": "|44261-6"}) == []
    assert await obs({"code:not": f"{LOINC}|44261-6"}) == [b]
    assert await obs({"category": "survey"}) == sorted([a, b, g])
    assert await obs({"category": "urn:cat|therapy"}) == [c]
    assert await obs({"status": "preliminary"}) == [c]
    assert await obs({"status": "final,preliminary"}) == sorted([a, b, c, g])
    # The checklist's example: reference, system|code and a date prefix together.
    assert await obs(
        {"subject": "Patient/p1", "code": f"{LOINC}|44261-6", "date": "ge2026-01-01"}
    ) == [a]
    # Time zones: 2026-01-15T08:30+02:00 is 06:30Z; 2025-12-31T23:30-05:00 is 2026-01-01T04:30Z.
    assert await obs({"date": "2026-01-15T06:30:00Z"}) == [b]
    assert await obs({"date": "2026-01-15T07:30:00+01:00"}) == [b]
    assert await obs({"date": "2026-01-15T08:30:00Z"}) == []
    assert await obs({"date": "2026"}) == sorted([a, b, c, g])
    assert await obs({"date": "2025"}) == []
    assert await obs({"date": "2026-01"}) == sorted([b, c])
    assert await obs({"date": "2026-03-01"}) == sorted([a, g])
    assert await obs({"date": "lt2026-01-01T05:00:00Z"}) == [c]
    assert await obs({"date": "sa2026-01-15T06:30:00Z"}) == sorted([a, g])
    assert await obs({"date": "eb2026-03-01"}) == sorted([b, c])
    assert await obs([("date", "ge2026-01"), ("date", "le2026-01-31")]) == sorted([b, c])


async def test_observation_value_quantity(outcomes: httpx.AsyncClient):
    def quantity(value: float, code: str = "mg", system: str = UCUM) -> dict:
        return {"value": value, "unit": code, "system": system, "code": code}

    def observation(**extra: object) -> dict:
        # A code outcomes does not check: mg is no unit of any measure it knows.
        return make_observation(code="2339-0", **extra)

    small = await create(outcomes, observation(valueQuantity=quantity(5.4)))
    near = await create(outcomes, observation(valueQuantity=quantity(5.44)))
    big = await create(outcomes, observation(valueQuantity=quantity(100)))
    grams = await create(outcomes, observation(valueQuantity=quantity(5.4, "g")))
    other = await create(outcomes, observation(valueQuantity=quantity(5.4, "mg", "urn:units")))

    async def vq(value: str) -> list[str]:
        return await found(outcomes, "/Observation", {"value-quantity": value})

    # eq uses the precision of the value given: 5.4 means [5.35, 5.45).
    assert await vq("5.4") == sorted([small, near, grams, other])
    assert await vq("5.40") == sorted([small, grams, other])
    assert await vq("eq5.44") == [near]
    assert await vq("100") == [big]
    assert await vq("1e2") == [big]
    assert await vq("ne5.4") == [big]
    assert await vq("gt5.4") == sorted([near, big])
    assert await vq("ge5.44") == sorted([near, big])
    assert await vq("lt5.44") == sorted([small, grams, other])
    assert await vq("le5.4") == sorted([small, grams, other])
    assert await vq("sa6") == [big]
    assert await vq("eb6") == sorted([small, near, grams, other])
    assert await vq("ap100") == [big]
    assert await vq(f"5.4|{UCUM}|mg") == sorted([small, near])
    assert await vq("5.4||mg") == sorted([small, near, other])
    assert await vq(f"5.4|{UCUM}|g") == [grams]
    assert await vq(f"gt1|{UCUM}|g") == [grams]
    assert await vq("5.4,100") == sorted([small, near, big, grams, other])
    assert await found(
        outcomes, "/Observation", [("value-quantity", "gt5"), ("value-quantity", "lt6||mg")]
    ) == sorted([small, near, other])


async def test_observation_has_member_and_derived_from(outcomes: httpx.AsyncClient):
    part1 = await create(outcomes, observation("p1", "44261-6"))
    part2 = await create(outcomes, observation("p1", "89204-2"))
    panel = await create(
        outcomes,
        observation(
            "p1",
            "77580-0",
            hasMember=[
                {"reference": f"Observation/{part1}"},
                {"reference": f"Observation/{part2}"},
            ],
        ),
    )
    derived = await create(
        outcomes, observation("p1", "1234-5", derivedFrom=[{"reference": f"Observation/{part1}"}])
    )
    assert await found(outcomes, "/Observation", {"has-member": part1}) == [panel]
    assert await found(outcomes, "/Observation", {"has-member": f"Observation/{part2}"}) == [panel]
    assert await found(outcomes, "/Observation", {"derived-from": f"Observation/{part1}"}) == [
        derived
    ]
    assert await found(outcomes, "/Observation", {"has-member:missing": "false"}) == [panel]
