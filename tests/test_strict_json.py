"""Client JSON is parsed strictly: a duplicate key anywhere is a 400 naming it, nothing stored."""

from __future__ import annotations

import base64

import httpx
import pytest

from shared.fhir import json_body
from shared.fhir.errors import FHIRError
from tests.conftest import BACKENDS
from tests.factories import FHIR_JSON
from tests.fhir_asserts import assert_outcome

PATCH_JSON = {"Content-Type": "application/json-patch+json"}
PATIENT = b'{"resourceType": "Patient", "gender": "male", "name": [{"family": "Chalmers"}]}'


async def _count(client: httpx.AsyncClient, res_type: str) -> int:
    return (await client.get(f"/{res_type}", params={"_summary": "count"})).json()["total"]


@BACKENDS
async def test_duplicate_keys_in_a_resource_are_400_naming_key_and_place(intake: httpx.AsyncClient):
    bodies = {
        b'{"resourceType": "Patient", "resourceType": "Patient", "gender": "male"}': (
            "resourceType",
            "resourceType",
        ),
        b'{"resourceType": "Patient", "gender": "male", "gender": "female"}': (
            "gender",
            "Patient.gender",
        ),
        b'{"resourceType": "Patient", "name": [{"given": []}, {"family": "B", "family": "C"}]}': (
            "family",
            "Patient.name[1].family",
        ),
    }
    for raw, (key, expression) in bodies.items():
        response = await intake.post("/Patient", content=raw, headers=FHIR_JSON)
        issue = assert_outcome(response, 400, "invalid")
        assert f"'{key}' more than once" in issue["diagnostics"]
        assert issue["expression"] == [expression]
    assert await _count(intake, "Patient") == 0
    created = (await intake.post("/Patient", content=PATIENT, headers=FHIR_JSON)).json()
    twice = PATIENT.replace(
        b'"gender"', b'"id": "%s", "gender": "female", "gender"' % (created["id"].encode())
    )
    response = await intake.put(f"/Patient/{created['id']}", content=twice, headers=FHIR_JSON)
    assert_outcome(response, 400, "invalid")
    assert (await intake.get(f"/Patient/{created['id']}")).json()["meta"]["versionId"] == "1"


@BACKENDS
async def test_duplicate_keys_in_a_patch_or_a_bundle_are_400(intake: httpx.AsyncClient):
    created = (await intake.post("/Patient", content=PATIENT, headers=FHIR_JSON)).json()
    url = f"/Patient/{created['id']}"
    patch = b'[{"op": "replace", "path": "/gender", "path": "/id", "value": "female"}]'
    issue = assert_outcome(
        await intake.patch(url, content=patch, headers=PATCH_JSON), 400, "invalid"
    )
    assert issue["expression"] == ["[0].path"]
    bundle = (
        b'{"resourceType": "Bundle", "type": "transaction", "entry": [{"resource": '
        + PATIENT.replace(b'"male"', b'"male", "active": true, "active": false')
        + b', "request": {"method": "POST", "url": "Patient"}}]}'
    )
    issue = assert_outcome(
        await intake.post("/", content=bundle, headers=FHIR_JSON), 400, "invalid"
    )
    assert issue["expression"] == ["Bundle.entry[0].resource.active"]
    data = base64.b64encode(patch).decode()
    binary = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [
            {
                "resource": {"resourceType": "Binary", "contentType": "x", "data": data},
                "request": {"method": "PATCH", "url": url[1:]},
            }
        ],
    }
    answer = (await intake.post("/", json=binary, headers=FHIR_JSON)).json()["entry"][0]
    assert answer["response"]["status"].startswith("400")
    assert "'path' more than once" in answer["response"]["outcome"]["issue"][0]["diagnostics"]
    assert await _count(intake, "Patient") == 1
    assert (await intake.get(url)).json()["meta"]["versionId"] == "1"


@pytest.mark.parametrize(
    ("raw", "status", "words"),
    [
        (b'{"a": NaN}', 400, "not valid JSON"),
        (b'{"a": 1e999}', 400, "too large"),
        (b'{"a": 123456789012345678901234567890}', 400, "64-bit"),
        (b'{"a": "\\ud800"}', 422, "surrogate"),
        (b'{"\\udfff": 1, "\\udfff": 2}', 400, "more than once"),
        (b'{"a": 1, "a": 2, "b": }', 400, "not valid JSON"),
        (b'{"x": {"a": 1, "a": 2}, "b": ' + b"[" * 5000 + b"]" * 5000 + b"}", 400, "repeats"),
        (b'{"\\udfff": 1}', 400, "surrogate"),
        (b'{"a": "x\\u0000"}', 422, "control character"),
        (b'{"a": "\xff"}', 400, "UTF-8"),
        (b"  ", 400, "empty"),
        (b"[" * 5000 + b"]" * 5000, 400, "nested deeper"),
        (b'{"a": ' * 70 + b"1" + b"}" * 70, 400, "nested deeper"),
    ],
)
def test_what_orjson_refused_or_cannot_store_is_still_refused(raw: bytes, status: int, words: str):
    with pytest.raises(FHIRError) as caught:
        json_body.loads(raw)
    assert caught.value.status == status
    assert words in caught.value.issues[0]["diagnostics"]


def test_escaped_text_that_is_safe_parses_unchanged():
    raw = b'{"a": "tab\\tand \\"\\\\u0000\\" and \\ud83d\\ude00", "b": [1.5, -9223372036854775808]}'
    assert json_body.loads(raw) == {
        "a": 'tab\tand "\\u0000" and \U0001f600',
        "b": [1.5, -(2**63)],
    }
