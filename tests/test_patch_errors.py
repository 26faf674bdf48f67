"""A JSON Patch that fails names the operation and path only: no resource data in errors or logs."""

from __future__ import annotations

import base64
import json
import logging

import httpx
import pytest

from tests.conftest import BACKENDS
from tests.factories import FHIR_JSON, patient
from tests.fhir_asserts import assert_outcome

pytestmark = BACKENDS
PATCH_JSON = {"Content-Type": "application/json-patch+json"}
SECRET = "Zebedee-7731"

FAILING = [
    # (operations, status, code, words in diagnostics, expression)
    (
        [{"op": "test", "path": "/name/0/family", "value": "Smith"}],
        422,
        "processing",
        "operation 0 (test path '/name/0/family')",
        ["Patient.name[0].family"],
    ),
    (
        [
            {"op": "replace", "path": "/gender", "value": "female"},
            {"op": "remove", "path": "/name/0/suffix"},
        ],
        422,
        "processing",
        "operation 1 (remove path '/name/0/suffix')",
        ["Patient.name[0].suffix"],
    ),
    (
        [{"op": "replace", "path": "/name/7/family", "value": "X"}],
        422,
        "processing",
        "operation 0 (replace path '/name/7/family')",
        ["Patient.name[7].family"],
    ),
    (
        [{"op": "move", "from": "/name/0/family/deeper", "path": "/gender"}],
        422,
        "processing",
        "operation 0 (move from '/name/0/family/deeper' path '/gender')",
        ["Patient.gender"],
    ),
    ([{"op": "frobnicate", "path": "/gender"}], 400, "invalid", "operation 0", ["[0].op"]),
    ([{"op": "add", "path": "/gender"}], 400, "invalid", "has no 'value'", ["[0].value"]),
    ([{"op": "copy", "from": 3, "path": "/a"}], 400, "invalid", "JSON Pointer", ["[0].from"]),
    (["remove"], 400, "invalid", "not an object", ["[0]"]),
]


@pytest.mark.parametrize(("operations", "status", "code", "words", "expression"), FAILING)
async def test_a_failing_patch_names_op_and_path_and_echoes_nothing(
    intake: httpx.AsyncClient,
    caplog: pytest.LogCaptureFixture,
    operations: list,
    status: int,
    code: str,
    words: str,
    expression: list[str],
):
    created = (await intake.post("/Patient", json=patient(family=SECRET), headers=FHIR_JSON)).json()
    url = f"/Patient/{created['id']}"
    caplog.set_level(logging.DEBUG)
    response = await intake.patch(url, json=operations, headers=PATCH_JSON)
    issue = assert_outcome(response, status, code)
    assert words in issue["diagnostics"]
    assert issue["expression"] == expression
    assert SECRET not in response.text and "Peter" not in response.text
    # Inside a Bundle the same patch fails the same way, and nothing is logged with data.
    data = base64.b64encode(json.dumps(operations).encode()).decode()
    batch = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [
            {
                "resource": {"resourceType": "Binary", "contentType": "x", "data": data},
                "request": {"method": "PATCH", "url": url[1:]},
            }
        ],
    }
    answer = await intake.post("/", json=batch, headers=FHIR_JSON)
    assert answer.json()["entry"][0]["response"]["status"].startswith(str(status))
    assert SECRET not in answer.text
    assert not [r for r in caplog.records if SECRET in r.getMessage()]
    assert (await intake.get(url)).json() == created
