"""The publication seam: server-published definitions are idempotent, versioned by content,
keep a version they carry, and one version results from publishers racing."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from services.intake.app import create_app
from shared.fhir import publication
from shared.fhir.publication import PublicationConflict, publish, publish_at_start
from shared.settings import ServiceSettings
from tests.conftest import BACKENDS, make_settings
from tests.kafka_support import serving
from tests.screening_support import BASE, search

URL = f"{BASE}/CodeSystem/seam-test"


def _code_system(*codes: str, version: str | None = None) -> dict[str, Any]:
    definition: dict[str, Any] = {
        "resourceType": "CodeSystem",
        "url": URL,
        "name": "SeamTest",
        "status": "active",
        "content": "complete",
        "concept": [{"code": code} for code in codes],
    }
    if version is not None:
        definition["version"] = version
    return definition


def _publish(client: httpx.AsyncClient, definition: dict[str, Any]) -> dict[str, Any]:
    context = client._transport.app.state.fhir  # type: ignore[attr-defined]
    with context.database.write() as session:
        return publish(context.interactions, session, definition)


async def _versions(client: httpx.AsyncClient) -> list[str]:
    return sorted(r["version"] for r in await search(client, "/CodeSystem", url=URL))


async def test_publishing_is_idempotent_and_a_change_is_the_next_version(
    intake: httpx.AsyncClient,
):
    first = _publish(intake, _code_system("a"))
    assert first["version"] == "1"
    assert _publish(intake, _code_system("a"))["id"] == first["id"]
    assert _publish(intake, _code_system("a", "b"))["version"] == "2"
    # Back to an earlier content: that version is found, nothing is written.
    assert _publish(intake, _code_system("a"))["id"] == first["id"]
    assert await _versions(intake) == ["1", "2"]
    history = (await intake.get("/CodeSystem/_history")).json()
    assert history["total"] == 2


async def test_a_definition_keeps_the_version_it_carries(intake: httpx.AsyncClient):
    assert _publish(intake, _code_system("a", version="2024.1"))["version"] == "2024.1"
    assert _publish(intake, _code_system("a", version="2024.1"))["meta"]["versionId"] == "1"
    # Changed content under the same version: refused, naming the element at fault.
    with pytest.raises(PublicationConflict) as refused:
        _publish(intake, _code_system("a", "b", version="2024.1"))
    assert refused.value.status == 409
    assert refused.value.issues[0]["expression"] == ["CodeSystem.version"]
    # A bumped version is a new resource, even with the content unchanged.
    assert _publish(intake, _code_system("a", "b", version="2024.2"))["version"] == "2024.2"
    assert _publish(intake, _code_system("a", "b", version="2024.3"))["version"] == "2024.3"
    assert await _versions(intake) == ["2024.1", "2024.2", "2024.3"]


async def test_an_invalid_definition_is_refused(intake: httpx.AsyncClient):
    with pytest.raises(publication.FHIRError) as refused:
        _publish(intake, {**_code_system("a"), "concept": "a"})
    assert refused.value.status == 422
    assert await _versions(intake) == []


@BACKENDS
async def test_racing_publishers_make_one_version(
    intake: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
):
    # Widen the race: each publisher looks, then dawdles before it writes.
    looked = publication.published_versions

    def slow(*args: Any) -> list[dict[str, Any]]:
        found = looked(*args)
        time.sleep(0.3)
        return found

    monkeypatch.setattr(publication, "published_versions", slow)
    start = threading.Barrier(2)

    def race() -> str:
        start.wait()
        return _publish(intake, _code_system("raced"))["id"]

    with ThreadPoolExecutor(2) as pool:
        ids = list(pool.map(lambda _: race(), range(2)))
    assert ids[0] == ids[1]
    assert await _versions(intake) == ["1"]


@BACKENDS
async def test_a_service_publishes_its_definitions_at_start(database_url: str):
    seen: list[ServiceSettings] = []

    def definitions(settings: ServiceSettings) -> list[dict[str, Any]]:
        seen.append(settings)
        return [_code_system("x", version="3")]

    app = create_app(make_settings("intake", database_url))
    publish_at_start(app, definitions)
    async with serving(app) as client:
        assert await _versions(client) == ["3"]
    assert [s.service_name for s in seen] == ["intake"]

    # A changed definition under the same version fails the start, loudly.
    again = create_app(make_settings("intake", database_url))
    publish_at_start(again, lambda _settings: [_code_system("x", "y", version="3")])
    with pytest.raises(PublicationConflict):
        async with serving(again):
            pass
