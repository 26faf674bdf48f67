"""Query bounds: sort keys, values per parameter and parameters per search are limited.

A search past a limit is the client's fault: a 400 OperationOutcome naming the limit, on every
entry point (GET and POST searches, conditional writes, Bundle entries), never a 503.
"""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import urlencode

import httpx

from tests.conftest import BACKENDS
from tests.factories import FHIR_JSON, patient
from tests.fhir_asserts import assert_outcome
from tests.search_helpers import create, match_ids, search

pytestmark = BACKENDS

MANY_IDS = ",".join(f"id-{n}" for n in range(5000))


def _too_costly(response: httpx.Response, setting: str, expression: str) -> None:
    issue = assert_outcome(response, 400, "too-costly")
    assert f"INTAKE_{setting}" in issue["diagnostics"]
    assert issue["expression"] == [expression]


async def test_sort_keys_are_limited_and_a_repeated_key_is_400(intake: httpx.AsyncClient):
    ids = [await create(intake, patient(family=f"F{n}", given=f"G{4 - n}")) for n in range(5)]
    five = "family,-given,birthdate,gender,_lastUpdated"
    assert match_ids(await search(intake, "/Patient", {"_sort": five})) == ids
    six = five + ",_id"
    _too_costly(await intake.get("/Patient", params={"_sort": six}), "MAX_SORT_KEYS", "_sort")
    # Keys add up over repeated _sort parameters.
    split = [("_sort", "family,given,birthdate"), ("_sort", "gender,_id,_lastUpdated")]
    _too_costly(await intake.get("/Patient", params=split), "MAX_SORT_KEYS", "_sort")
    for repeated in ("family,family", "family,-family", "given,family,given"):
        response = await intake.get("/Patient", params={"_sort": repeated})
        issue = assert_outcome(response, 400, "invalid")
        assert issue["expression"] == ["_sort"], repeated
    across = [("_sort", "family"), ("_sort", "-family")]
    assert_outcome(await intake.get("/Patient", params=across), 400, "invalid")


async def test_sort_over_several_parameters_applies_all_keys(intake: httpx.AsyncClient):
    first = await create(intake, patient(family="Same", given="B"))
    second = await create(intake, patient(family="Same", given="A"))
    bundle = await search(intake, "/Patient", [("_sort", "family"), ("_sort", "given")])
    assert match_ids(bundle) == [second, first]
    assert "_sort=family%2Cgiven" in bundle["link"][0]["url"]


async def test_a_huge_or_list_is_400_naming_the_limit_not_503(intake: httpx.AsyncClient):
    known = await create(intake, patient())
    hundred = ",".join([known] + [f"id-{n}" for n in range(99)])
    assert match_ids(await search(intake, "/Patient", {"_id": hundred})) == [known]
    response = await intake.get("/Patient", params={"_id": hundred + ",one-more"})
    _too_costly(response, "MAX_PARAM_VALUES", "_id")
    _too_costly(await intake.get("/Patient", params={"_id": MANY_IDS}), "MAX_PARAM_VALUES", "_id")
    response = await intake.post(
        "/Patient/_search",
        content=urlencode({"identifier": MANY_IDS}),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    _too_costly(response, "MAX_PARAM_VALUES", "identifier")


async def test_too_many_parameters_is_400(intake: httpx.AsyncClient):
    fifty = [("given", f"g{n}") for n in range(50)]
    assert (await intake.get("/Patient", params=fifty)).status_code == 200
    response = await intake.get("/Patient", params=[*fifty, ("family", "x")])
    _too_costly(response, "MAX_QUERY_PARAMS", "family")
    response = await intake.post(
        "/Patient/_search",
        content=urlencode([("given", "g")] * 5000),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    _too_costly(response, "MAX_QUERY_PARAMS", "_search")


async def test_conditional_writes_and_bundle_searches_are_bounded(intake: httpx.AsyncClient):
    condition = {"If-None-Exist": f"_id={MANY_IDS}"}
    response = await intake.post("/Patient", json=patient(), headers={**FHIR_JSON, **condition})
    _too_costly(response, "MAX_PARAM_VALUES", "_id")
    _too_costly(await intake.delete(f"/Patient?_id={MANY_IDS}"), "MAX_PARAM_VALUES", "_id")
    response = await intake.put(f"/Patient?_id={MANY_IDS}", json=patient(), headers=FHIR_JSON)
    _too_costly(response, "MAX_PARAM_VALUES", "_id")
    batch = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [
            {"request": {"method": "GET", "url": f"Patient?_id={MANY_IDS}"}},
            {"request": {"method": "GET", "url": "Patient?_sort=" + ",".join(["family"] * 6)}},
            {"request": {"method": "GET", "url": "Patient?_id=x"}},
        ],
    }
    response = await intake.post("/", json=batch, headers=FHIR_JSON)
    statuses = [e["response"]["status"] for e in response.json()["entry"]]
    assert statuses[0].startswith("400") and statuses[1].startswith("400"), statuses
    assert statuses[2].startswith("200")
    outcome = response.json()["entry"][0]["response"]["outcome"]
    assert outcome["issue"][0]["code"] == "too-costly"
    transaction = {**batch, "type": "transaction", "entry": batch["entry"][:1]}
    response = await intake.post("/", json=transaction, headers=FHIR_JSON)
    assert_outcome(response, 400, "too-costly")
    assert (await intake.get("/Patient")).json()["total"] == 0


async def test_limits_follow_the_settings(service_client: Callable[..., httpx.AsyncClient]):
    async with service_client(
        "intake", max_sort_keys=1, max_param_values=2, max_query_params=3
    ) as client:
        assert (await client.get("/Patient", params={"_sort": "family"})).status_code == 200
        response = await client.get("/Patient", params={"_sort": "family,given"})
        _too_costly(response, "MAX_SORT_KEYS", "_sort")
        assert (await client.get("/Patient", params={"_id": "a,b"})).status_code == 200
        _too_costly(await client.get("/Patient?_id=a,b,c"), "MAX_PARAM_VALUES", "_id")
        response = await client.get("/Patient?given=a&given=b&given=c&family=d")
        _too_costly(response, "MAX_QUERY_PARAMS", "family")
