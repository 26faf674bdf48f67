"""History paging, `_since` and `_at` at every level, and a resync over several pages."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from shared.events.catchup import resync_from_owner
from tests import kafka_support
from tests.auth_support import StaffBearer
from tests.conftest import BACKENDS
from tests.factories import FHIR_JSON, patient
from tests.kafka_support import running

new_database = kafka_support.new_database


async def _versions(intake: httpx.AsyncClient, pid: str, count: int) -> list[dict[str, Any]]:
    """Give a patient `count` versions; returns the responses, oldest first."""
    # PUT to an unknown id creates it, under the id the test chose.
    created = await intake.put(f"/Patient/{pid}", json={**patient(), "id": pid}, headers=FHIR_JSON)
    assert created.is_success, created.text
    bodies = [created.json()]
    for n in range(count - 1):
        body = {**patient(given=f"V{n}"), "id": pid}
        updated = await intake.put(f"/Patient/{pid}", json=body, headers=FHIR_JSON)
        assert updated.status_code == 200, updated.text
        bodies.append(updated.json())
    return bodies


async def _pages(client: httpx.AsyncClient, path: str, **params: Any) -> list[dict[str, Any]]:
    """Every page of a history, following `next` links; asserts each page's links."""
    pages = []
    response = await client.get(path, params=params)
    while True:
        assert response.status_code == 200, response.text
        bundle = response.json()
        assert bundle["type"] == "history"
        pages.append(bundle)
        nxt = [link["url"] for link in bundle.get("link", []) if link["relation"] == "next"]
        if not nxt:
            return pages
        assert len(pages) < 50, "next links never end"
        response = await client.get(nxt[0])


def _ids(pages: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [
        (e["fullUrl"].rsplit("/", 1)[-1], e["response"]["etag"])
        for page in pages
        for e in page.get("entry", [])
    ]


@BACKENDS
@pytest.mark.parametrize("versions, expected_pages", [(5, [2, 2, 1]), (4, [2, 2])])
async def test_instance_history_pages_end_without_a_next_link(
    intake: httpx.AsyncClient, versions: int, expected_pages: list[int]
):
    await _versions(intake, "paged", versions)
    pages = await _pages(intake, "/Patient/paged/_history", _count=2)
    # An exactly full last page has no `next`: a client would fetch an empty page otherwise.
    assert [len(p.get("entry", [])) for p in pages] == expected_pages
    assert [etag for _, etag in _ids(pages)] == [f'W/"{v}"' for v in range(versions, 0, -1)]
    assert all(p["total"] == versions for p in pages)


@BACKENDS
async def test_type_and_system_history_pages_cover_every_version_once(intake: httpx.AsyncClient):
    await _versions(intake, "a", 3)
    await _versions(intake, "b", 4)
    for path in ("/Patient/_history", "/_history"):
        pages = await _pages(intake, path, _count=3)
        assert [len(p.get("entry", [])) for p in pages] == [3, 3, 1]
        seen = _ids(pages)
        assert len(set(seen)) == 7
        assert sorted(seen) == sorted(
            [("a", f'W/"{v}"') for v in range(1, 4)] + [("b", f'W/"{v}"') for v in range(1, 5)]
        )


@BACKENDS
async def test_since_and_at_select_versions_by_time(intake: httpx.AsyncClient):
    bodies = await _versions(intake, "timed", 2)
    await asyncio.sleep(0.01)
    later = await _versions(intake, "other", 1)
    first_time = bodies[0]["meta"]["lastUpdated"]
    second_time = bodies[1]["meta"]["lastUpdated"]
    third_time = later[0]["meta"]["lastUpdated"]
    # _since is inclusive and to the microsecond: between versions, not far-off dates.
    since = (await intake.get("/_history", params={"_since": second_time})).json()
    assert sorted(_ids([since])) == [("other", 'W/"1"'), ("timed", 'W/"2"')]
    since_third = (await intake.get("/Patient/_history", params={"_since": third_time})).json()
    assert _ids([since_third]) == [("other", 'W/"1"')]
    # _at: the versions as they stood at that moment, nothing written later.
    at_first = (await intake.get("/Patient/timed/_history", params={"_at": first_time})).json()
    assert _ids([at_first]) == [("timed", 'W/"1"')]
    at_second = (await intake.get("/_history", params={"_at": second_time})).json()
    assert ("other", 'W/"1"') not in _ids([at_second])
    assert ("timed", 'W/"2"') in _ids([at_second])
    # The paging links keep the filters.
    paged = await _pages(intake, "/_history", _since=first_time, _at=second_time, _count=1)
    assert sorted(_ids(paged)) == [("timed", 'W/"1"'), ("timed", 'W/"2"')]


async def test_a_resync_follows_history_over_several_pages(
    intake: httpx.AsyncClient, new_database: Callable[[str], str]
):
    for n in range(5):
        await _versions(intake, f"r{n}", 5)  # 25 versions: three pages of 10
    owner = intake._transport.app  # type: ignore[attr-defined]
    async with (
        running("scheduling", new_database("replica")) as scheduling,
        httpx.AsyncClient(transport=httpx.ASGITransport(app=owner), auth=StaffBearer()) as client,
    ):
        replica = scheduling.app
        applied = await resync_from_owner(
            replica.state.events.writer,
            replica.state.fhir.database,
            "http://testserver/fhir",
            "Patient",
            since=None,
            client=client,
            page_size=10,
        )
        assert applied == 25
        for n in range(5):
            history = (await scheduling.client.get(f"/Patient/r{n}/_history")).json()
            assert [e["response"]["etag"] for e in history["entry"]] == [
                f'W/"{v}"' for v in range(5, 0, -1)
            ]
