"""Definitions the server publishes itself (Questionnaire, CodeSystem, any canonical resource):
idempotent, versioned by content, one publisher at a time per url.

A definition without a `version` is numbered by the publisher (1, 2, ...): a changed content
becomes the next number. A definition carrying its own `version` keeps it (a CodeSystem whose
version is its rule table's): the same version with a changed content is refused, since codings
already point at `url|version` and must keep meaning what they meant.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from shared.fhir import exact_json
from shared.fhir.errors import FHIRError
from shared.fhir.validation import validate_resource

if TYPE_CHECKING:
    from fastapi import FastAPI
    from sqlalchemy.orm import Session

    from shared.fhir.interactions import Interactions
    from shared.settings import ServiceSettings

# A service's definitions, built from its settings (the canonical base names their urls).
Definitions = Callable[["ServiceSettings"], list[dict[str, Any]]]

# What the server or the publisher sets: left out when comparing definitions.
_VOLATILE = ("id", "meta", "version", "text")


class PublicationConflict(FHIRError):
    """A definition changed under a version it names itself: bump the version."""

    def __init__(self, res_type: str, url: str, version: str) -> None:
        super().__init__(
            409,
            f"{res_type} {url}|{version} is already published with other content; "
            "a changed definition needs a new version",
            code="conflict",
            expression=[f"{res_type}.version"],
        )


def content(resource: dict[str, Any]) -> Any:
    """The resource without what publishing sets, with numbers as storage reads them back."""
    kept = {k: v for k, v in resource.items() if k not in _VOLATILE}
    return exact_json.loads(exact_json.dumps(kept))


def published_versions(
    interactions: Interactions, session: Session, res_type: str, url: str
) -> list[dict[str, Any]]:
    """Every stored `res_type` with this canonical url."""
    pairs = [("url", url), ("_count", "1000")]
    return interactions.search(session, res_type, pairs, strict=True).resources


def _next_version(stored: list[dict[str, Any]]) -> str:
    numbers = [int(r["version"]) for r in stored if str(r.get("version", "")).isdigit()]
    return str(max(numbers, default=0) + 1)


def publish(
    interactions: Interactions, session: Session, definition: dict[str, Any]
) -> dict[str, Any]:
    """The stored resource equal to `definition`, written only when none is; see the module
    docstring for versions. Runs in the caller's write transaction."""
    res_type, url = definition.get("resourceType"), definition.get("url")
    if not isinstance(res_type, str) or not isinstance(url, str):
        raise ValueError("a published definition needs a resourceType and a url")
    interactions.definition(res_type)  # 404 for a type this service does not serve
    # Several workers start at once: one publishes, the others then find its version.
    interactions.store.database.lock(session, f"publish:{res_type}:{url}")
    stored = published_versions(interactions, session, res_type, url)
    wanted = content(definition)
    version = definition.get("version")
    if version is None:
        for existing in stored:
            if content(existing) == wanted:
                return existing
        version = _next_version(stored)
    else:
        for existing in stored:
            if existing.get("version") == version:
                if content(existing) == wanted:
                    return existing
                raise PublicationConflict(res_type, url, str(version))
    resource = {**copy.deepcopy(definition), "version": version}
    validate_resource(resource, res_type)
    # The store, not the API's create: the type may be read-only to clients (api_writable).
    created = interactions.store.create(session, res_type, resource)
    assert created.resource is not None
    return created.resource


def publish_at_start(app: FastAPI, definitions: Definitions) -> None:
    """Publish `definitions(settings)` once the app's own start-up (migrations) has run, one
    transaction each; a conflict or an invalid definition fails the start."""
    inner = app.router.lifespan_context
    context = app.state.fhir

    def publish_now() -> None:
        for definition in definitions(context.settings):
            with context.database.write() as session:
                publish(context.interactions, session, definition)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with inner(app):
            await asyncio.to_thread(publish_now)
            yield

    app.router.lifespan_context = lifespan
