"""Core FHIR invariants (ext-1, dom-2..5, ref-1, contained ids, modifierExtension) on writes."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.conftest import BACKENDS
from tests.factories import FHIR_JSON, observation
from tests.fhir_asserts import assert_outcome
from tests.measures_support import known_patient

PATCH_JSON = {"Content-Type": "application/json-patch+json"}
PATIENT = {"resourceType": "Patient", "id": "p", "gender": "female"}
EXT = {"url": "http://example.org/a", "valueString": "x"}


@pytest.fixture
def outcomes(outcomes: httpx.AsyncClient) -> httpx.AsyncClient:
    """Outcomes knowing the subject of these Observations (p1), as intake's event would."""
    known_patient(outcomes, "p1")
    return outcomes


def _with_patient(**extra: Any) -> dict[str, Any]:
    """A valid Observation whose performer is a contained Patient (its subject is a patient
    outcomes knows: a contained one would not be)."""
    return observation(**{"performer": [{"reference": "#p"}], "contained": [PATIENT], **extra})


BROKEN = {
    "ext-1 both": (
        observation(extension=[{**EXT, "extension": [EXT]}]),
        "ext-1",
        "Observation.extension[0]",
    ),
    "ext-1 neither": (
        observation(extension=[{"url": "http://example.org/a"}]),
        "ext-1",
        "Observation.extension[0]",
    ),
    "ext-1 on a primitive": (
        observation(_status={"extension": [{**EXT, "extension": [EXT]}]}),
        "ext-1",
        "Observation.status.extension[0]",
    ),
    "ext-1 inside a contained resource": (
        observation(
            subject={"reference": "#p"},
            contained=[{**PATIENT, "extension": [{**EXT, "extension": [EXT]}]}],
        ),
        "ext-1",
        "Observation.contained[0].extension[0]",
    ),
    "dom-2": (
        _with_patient(
            contained=[{**PATIENT, "contained": [{"resourceType": "Patient", "id": "q"}]}]
        ),
        "dom-2",
        "Observation.contained[0].contained",
    ),
    "dom-3": (
        observation(contained=[PATIENT]),
        "dom-3",
        "Observation.contained[0]",
    ),
    "dom-4": (
        _with_patient(contained=[{**PATIENT, "meta": {"versionId": "3"}}]),
        "dom-4",
        "Observation.contained[0].meta.versionId",
    ),
    "dom-5": (
        _with_patient(
            contained=[{**PATIENT, "meta": {"security": [{"system": "s", "code": "R"}]}}]
        ),
        "dom-5",
        "Observation.contained[0].meta.security",
    ),
    "ref-1": (
        observation(subject={"reference": "#nobody"}),
        "ref-1",
        "Observation.subject.reference",
    ),
    "ref-1 '#' outside a contained resource": (
        _with_patient(focus=[{"reference": "#"}]),
        "ref-1",
        "Observation.focus[0].reference",
    ),
}


@BACKENDS
@pytest.mark.parametrize("case", BROKEN, ids=str)
async def test_a_broken_invariant_is_422_naming_it_and_nothing_is_stored(
    outcomes: httpx.AsyncClient, case: str
):
    body, key, expression = BROKEN[case]
    issue = assert_outcome(
        await outcomes.post("/Observation", json=body, headers=FHIR_JSON), 422, "invariant"
    )
    assert issue["diagnostics"].startswith(f"{key}: ")
    assert issue["expression"] == [expression]
    assert (await outcomes.get("/Observation")).json()["total"] == 0


@BACKENDS
async def test_contained_without_id_and_unknown_modifier_extensions_are_refused(
    outcomes: httpx.AsyncClient,
):
    no_id = observation(contained=[{"resourceType": "Patient", "gender": "female"}])
    issue = assert_outcome(
        await outcomes.post("/Observation", json=no_id, headers=FHIR_JSON), 422, "required"
    )
    assert issue["expression"] == ["Observation.contained[0].id"]
    for where, body in (
        ("Observation.modifierExtension[0]", observation(modifierExtension=[EXT])),
        (
            "Observation.component[0].modifierExtension[0]",
            observation(component=[{"code": {"text": "c"}, "modifierExtension": [EXT]}]),
        ),
    ):
        response = await outcomes.post("/Observation", json=body, headers=FHIR_JSON)
        issue = assert_outcome(response, 422, "not-supported")
        assert issue["expression"] == [where]
        assert EXT["url"] in issue["diagnostics"]
    assert (await outcomes.get("/Observation")).json()["total"] == 0


@BACKENDS
async def test_update_patch_and_bundle_entries_are_checked_too(outcomes: httpx.AsyncClient):
    created = (await outcomes.post("/Observation", json=_with_patient(), headers=FHIR_JSON)).json()
    url = f"/Observation/{created['id']}"
    dangling = {**created, "performer": [{"reference": "#other"}]}
    response = await outcomes.put(url, json=dangling, headers=FHIR_JSON)
    assert_outcome(response, 422, "invariant")
    # The contained Patient is now referenced by nothing: both invariants are named.
    keys = {item["diagnostics"].split(":")[0] for item in response.json()["issue"]}
    assert keys == {"ref-1", "dom-3"}
    unreferenced = [{"op": "remove", "path": "/performer"}]
    response = await outcomes.patch(url, json=unreferenced, headers=PATCH_JSON)
    assert assert_outcome(response, 422, "invariant")["expression"] == ["Observation.contained[0]"]
    transaction = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"resource": observation(), "request": {"method": "POST", "url": "Observation"}},
            {
                "resource": observation(extension=[{"url": "http://example.org/a"}]),
                "request": {"method": "POST", "url": "Observation"},
            },
        ],
    }
    issue = assert_outcome(
        await outcomes.post("/", json=transaction, headers=FHIR_JSON), 422, "invariant"
    )
    assert issue["expression"] == ["Bundle.entry[1].resource.extension[0]"]
    assert (await outcomes.get("/Observation")).json()["total"] == 1
    assert (await outcomes.get(url)).json() == created


@BACKENDS
async def test_valid_contained_resources_and_extensions_are_stored_unchanged(
    outcomes: httpx.AsyncClient,
):
    body = _with_patient(
        extension=[{"url": "http://example.org/nested", "extension": [EXT]}],
        # A contained resource may point back at its container with "#".
        contained=[
            PATIENT,
            {
                "resourceType": "Patient",
                "id": "q",
                "link": [{"other": {"reference": "#"}, "type": "seealso"}],
            },
        ],
    )
    response = await outcomes.post("/Observation", json=body, headers=FHIR_JSON)
    assert response.status_code == 201, response.text
    stored = (await outcomes.get(response.headers["location"])).json()
    assert stored["contained"] == body["contained"]
    assert stored["extension"] == body["extension"]
