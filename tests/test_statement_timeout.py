"""Every statement has a time limit: a search past it is a 400 `too-costly`, not a 503.

A real outage (the database cannot be reached) stays a 503 with Retry-After.
"""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import urlencode

import httpx

from services.intake.app import IntakeSettings, create_app
from tests.auth_support import auth_settings, staff_headers
from tests.conftest import BACKENDS
from tests.costly import MARK, costly_params, seed
from tests.factories import FHIR_JSON, patient
from tests.fhir_asserts import assert_outcome
from tests.search_helpers import match_ids, search
from tooling.ports import free_port


def _timed_out(response: httpx.Response) -> None:
    issue = assert_outcome(response, 400, "too-costly")
    assert "200 ms" in issue["diagnostics"] and "STATEMENT_TIMEOUT_MS" in issue["diagnostics"]


@BACKENDS
async def test_a_search_past_the_statement_timeout_is_400_too_costly(
    service_client: Callable[..., httpx.AsyncClient],
):
    async with service_client("intake", statement_timeout_ms=200) as intake:
        await seed(intake)
        _timed_out(await intake.get("/Patient", params=costly_params()))
        form = urlencode(costly_params())
        response = await intake.post(
            "/Patient/_search",
            content=form,
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        _timed_out(response)
        # The interrupted connections serve the next searches normally.
        for _ in range(3):
            bundle = await search(intake, "/Patient", {"family": MARK, "_count": "100"})
            assert len(match_ids(bundle)) == 40


@BACKENDS
async def test_costly_conditions_and_bundle_searches_time_out_per_entry(
    service_client: Callable[..., httpx.AsyncClient],
):
    async with service_client("intake", statement_timeout_ms=200) as intake:
        await seed(intake)
        condition = urlencode(costly_params())
        response = await intake.post(
            "/Patient", json=patient(), headers={**FHIR_JSON, "If-None-Exist": condition}
        )
        _timed_out(response)
        batch = {
            "resourceType": "Bundle",
            "type": "batch",
            "entry": [
                {"request": {"method": "GET", "url": f"Patient?{condition}"}},
                {"resource": patient(), "request": {"method": "POST", "url": "Patient"}},
            ],
        }
        entries = (await intake.post("/", json=batch, headers=FHIR_JSON)).json()["entry"]
        assert entries[0]["response"]["status"].startswith("400")
        assert entries[0]["response"]["outcome"]["issue"][0]["code"] == "too-costly"
        assert entries[1]["response"]["status"].startswith("201")
        transaction = {
            "resourceType": "Bundle",
            "type": "transaction",
            "entry": [
                {"resource": patient(), "request": {"method": "POST", "url": "Patient"}},
                {
                    "resource": patient(),
                    "request": {"method": "POST", "url": "Patient", "ifNoneExist": condition},
                },
            ],
        }
        _timed_out(await intake.post("/", json=transaction, headers=FHIR_JSON))
        # The failed transaction wrote nothing: 40 seeded and the batch's one.
        assert (await intake.get("/Patient")).json()["total"] == 41


async def test_an_unreachable_database_is_still_503():
    down = f"postgresql+psycopg://nobody@127.0.0.1:{free_port()}/nothing"
    app = create_app(IntakeSettings(database_url=down, migrate_on_start=False, **auth_settings()))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(
        transport=transport, base_url="http://t/fhir", headers=staff_headers()
    ) as intake:
        response = await intake.get("/Patient", params={"family": "x"})
    app.state.fhir.database.dispose()
    assert_outcome(response, 503, "transient")
    assert response.headers["Retry-After"]
