"""The FHIR REST routes: one set per declared resource type, built from the registry."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from fastapi import APIRouter, Request
from fastapi.responses import Response
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from shared.db.engine import CLIENT_GONE, Database, QueryGuard
from shared.fhir.bundles import history, searchset
from shared.fhir.capability import capability_statement
from shared.fhir.dates import DateFormatError, date_range, http_date
from shared.fhir.errors import FHIRError, bad_request, issue, operation_outcome
from shared.fhir.http import base_url as _base_url
from shared.fhir.http import (
    check_accept,
    fhir_response,
    prefer,
    read_body,
    read_json,
)
from shared.fhir.interactions import Interactions, Result, parse_etag
from shared.fhir.operation_routes import add_operation_routes
from shared.fhir.references import ID_PATTERN
from shared.fhir.registry import Registry, ResourceDef
from shared.fhir.store import ResourceStore
from shared.fhir.transaction import BundleProcessor
from shared.fhir.validation import parse_json
from shared.settings import ServiceSettings

JSON_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/fhir+json": {"schema": {"type": "object"}},
            "application/json": {"schema": {"type": "object"}},
        },
    }
}
PATCH_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/json-patch+json": {"schema": {"type": "array"}}},
    }
}
FORM = {"application/x-www-form-urlencoded"}


@dataclass
class FHIRContext:
    """Everything the routes need, built once per app by create_service_app."""

    settings: ServiceSettings
    registry: Registry
    database: Database
    store: ResourceStore
    interactions: Interactions
    bundles: BundleProcessor
    version: str


def _resource_headers(result: Result, base: str) -> dict[str, str]:
    stored = result.stored
    if stored is None:
        return {}
    headers = {"ETag": stored.etag, "Last-Modified": http_date(stored.last_updated)}
    if result.status == 201 or stored.method in ("PUT", "PATCH"):
        headers["Location"] = f"{base}/{stored.location}"
    return headers


def _respond(request: Request, result: Result, base: str) -> Response:
    headers = _resource_headers(result, base)
    stored = result.stored
    if stored is None:
        return fhir_response(result.body, result.status, headers)
    wanted = prefer(request.headers, "return")
    if request.method in ("POST", "PUT", "PATCH") and wanted == "minimal":
        return fhir_response(None, result.status, headers)
    if request.method in ("POST", "PUT", "PATCH") and wanted == "operationoutcome":
        outcome = operation_outcome(
            [
                issue(
                    "information",
                    "informational",
                    f"{stored.type}/{stored.id} stored as version {stored.version_id}",
                )
            ]
        )
        return fhir_response(outcome, result.status, headers)
    return fhir_response(stored.resource, result.status, headers)


def _strict(request: Request) -> bool:
    return prefer(request.headers, "handling") == "strict"


def _search_pairs(
    request: Request, extra: list[tuple[str, str]] | None = None
) -> list[tuple[str, str]]:
    pairs = [(k, v) for k, v in request.query_params.multi_items() if k != "_format"]
    return pairs + (extra or [])


async def _cancel_on_disconnect(request: Request, guard: QueryGuard) -> None:
    """Cancel the guarded database work when the client disconnects."""
    while True:
        # The body, if any, has been read: the next message can only be the disconnect.
        message = await request.receive()
        if message["type"] == "http.disconnect":
            break
    # Cancelling on PostgreSQL opens a connection to the server: not on the event loop, and
    # not in the request thread pool, which long queries may have filled.
    await asyncio.to_thread(guard.cancel, CLIENT_GONE)


def _since(raw: str | None, name: str) -> Any:
    if raw is None:
        return None
    try:
        return date_range(raw)[0]
    except DateFormatError as exc:
        raise bad_request(f"{name}: {exc}", [name]) from None


def _int_param(request: Request, name: str, default: int, maximum: int) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 12):
        raise bad_request(f"'{name}' must be a whole number, not '{raw}'", [name])
    return min(int(raw), maximum)


def _known_id(res_type: str, res_id: str) -> str:
    """An id in a read URL; one that cannot exist in FHIR is simply not found."""
    if res_id.startswith("$"):
        # Declared operations have routes of their own; this one is not served here.
        raise FHIRError(
            404,
            f"The operation {res_id[:64]} is not served on {res_type} at this level "
            "(the CapabilityStatement lists the operations served)",
            code="not-supported",
        )
    if not ID_PATTERN.fullmatch(res_id):
        raise FHIRError(404, f"{res_type}/{res_id[:80]} is not known", code="not-found")
    return res_id


def _new_id(res_type: str, res_id: str) -> str:
    """An id a client asks us to write: FHIR ids are 1-64 of A-Z a-z 0-9 - ."""
    if not ID_PATTERN.fullmatch(res_id):
        raise bad_request(
            f"'{res_id[:80]}' is not a valid FHIR id (1-64 of A-Z, a-z, 0-9, '-', '.')",
            [f"{res_type}.id"],
        )
    return res_id


def _version(res_type: str, res_id: str, vid: str) -> str:
    if not (vid.isascii() and vid.isdigit() and len(vid) <= 12):
        raise FHIRError(
            404, f"{res_type}/{res_id}/_history/{vid[:20]} is not known", code="not-found"
        )
    return vid


def build_router(ctx: FHIRContext) -> APIRouter:
    """All FHIR routes of one service, under its base path."""
    router = APIRouter(prefix=ctx.settings.base_path)
    settings = ctx.settings

    def base(request: Request) -> str:
        return _base_url(request, settings.base_path)

    async def in_tx(fn: Callable[..., Result], *args: Any, **kwargs: Any) -> Result:
        def work() -> Result:
            with ctx.database.write() as session:
                return fn(session, *args, **kwargs)

        return await run_in_threadpool(work)

    async def in_read(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        def work() -> Any:
            with ctx.database.read() as session:
                return fn(session, *args, **kwargs)

        return await run_in_threadpool(work)

    async def in_query(request: Request, fn: Callable[[Session], Any]) -> Any:
        """Run a search-like read whose database work stops if the client goes away."""
        guard = ctx.database.guard()

        def work() -> Any:
            with ctx.database.read(guard) as session:
                return fn(session)

        if guard is None:
            return await run_in_threadpool(work)
        watcher = asyncio.create_task(_cancel_on_disconnect(request, guard))
        try:
            return await run_in_threadpool(work)
        finally:
            watcher.cancel()

    @router.get("/metadata", tags=["system"], summary="CapabilityStatement")
    async def metadata(request: Request) -> Response:
        check_accept(request)
        return fhir_response(
            capability_statement(ctx.registry, base(request), ctx.version, settings.canonical_base)
        )

    @router.post(
        "/", tags=["system"], summary="Transaction or batch Bundle", openapi_extra=JSON_BODY
    )
    async def bundle(request: Request) -> Response:
        check_accept(request)
        body = await read_json(request, settings.max_body_bytes)
        where = base(request)
        response = await run_in_threadpool(
            ctx.bundles.process, body, where, prefer(request.headers, "return"), _strict(request)
        )
        return fhir_response(response)

    # HAPI and most clients POST Bundles to the base without a trailing slash.
    router.add_api_route("", bundle, methods=["POST"], include_in_schema=False)

    @router.get("/_history", tags=["system"], summary="System history")
    async def system_history(request: Request) -> Response:
        check_accept(request)
        return await _history(request, None, None)

    async def _history(request: Request, res_type: str | None, res_id: str | None) -> Response:
        count = _int_param(request, "_count", settings.default_page_size, settings.max_page_size)
        offset = _int_param(request, "_offset", 0, 10**9)
        since = _since(request.query_params.get("_since"), "_since")
        at = request.query_params.get("_at")
        at_or_before = date_range(at)[1] if at and _since(at, "_at") else None
        if res_type and res_id:
            # History of an id that never existed is a 404, as for a read.
            known = await in_read(
                lambda s: bool(ctx.store.history(s, res_type=res_type, res_id=res_id, count=1)[1])
            )
            if not known:
                raise FHIRError(404, f"{res_type}/{res_id} is not known", code="not-found")
        versions, total = await in_query(
            request,
            lambda s: ctx.store.history(
                s,
                res_type=res_type,
                res_id=res_id,
                since=since,
                at_or_before=at_or_before,
                count=count,
                offset=offset,
            ),
        )
        url = "/".join(p for p in (base(request), res_type, res_id) if p) + "/_history"
        applied = [(k, v) for k, v in request.query_params.multi_items() if k in ("_since", "_at")]
        return fhir_response(history(base(request), url, versions, total, count, offset, applied))

    async def operation_in_tx(_request: Request, fn: Callable[[Session], Any]) -> Any:
        return await in_tx(fn)

    # Before the type routes: `/Patient/$everything` must not be read as `/Patient/{id}`.
    add_operation_routes(
        router, ctx.interactions, base=base, in_tx=operation_in_tx, in_read=in_query
    )
    for definition in ctx.registry.resources.values():
        _type_routes(router, ctx, definition, base, in_tx, in_read, in_query, _history)
    return router


def _type_routes(
    router: APIRouter,
    ctx: FHIRContext,
    definition: ResourceDef,
    base: Callable[[Request], str],
    in_tx: Callable[..., Any],
    in_read: Callable[..., Any],
    in_query: Callable[..., Any],
    history_route: Callable[..., Any],
) -> None:
    """Register the interactions of one resource type."""
    res_type = definition.type
    ix = ctx.interactions
    settings = ctx.settings
    limit = settings.max_body_bytes
    tags = [res_type]
    search_params = [
        {"name": p.name, "in": "query", "required": False, "schema": {"type": "string"}}
        for p in definition.params
    ]

    async def search(request: Request, extra: list[tuple[str, str]] | None = None) -> Response:
        check_accept(request)
        pairs = _search_pairs(request, extra)
        strict = _strict(request)
        found = await in_query(request, lambda s: ix.search(s, res_type, pairs, strict=strict))
        body = searchset(base(request), found.query, found.resources, found.total, found.included)
        return fhir_response(body)

    async def search_get(request: Request) -> Response:
        return await search(request)

    async def search_post(request: Request) -> Response:
        raw = await read_body(request, limit, FORM)
        try:
            form = parse_qsl(
                raw.decode("utf-8"),
                keep_blank_values=True,
                strict_parsing=False,
                # Stop early rather than split a megabyte into half a million fields.
                max_num_fields=settings.max_query_params,
            )
        except UnicodeDecodeError:
            raise bad_request("The form body is not UTF-8") from None
        except ValueError:
            raise ix.limits.exceeded(
                "The form body has too many parameters",
                settings.max_query_params,
                "MAX_QUERY_PARAMS",
                "_search",
            ) from None
        return await search(request, form)

    async def create(request: Request) -> Response:
        check_accept(request)
        body = await read_json(request, limit)
        condition = request.headers.get("if-none-exist")
        result = await in_tx(ix.create, res_type, body, if_none_exist=condition)
        return _respond(request, result, base(request))

    async def conditional_update(request: Request) -> Response:
        check_accept(request)
        body = await read_json(request, limit)
        condition = str(request.url.query)
        if not condition:
            raise FHIRError(
                405, f"PUT {res_type} needs an id or search parameters", code="not-supported"
            )
        if_match = parse_etag(request.headers.get("if-match"))
        result = await in_tx(ix.conditional_update, res_type, condition, body, if_match=if_match)
        return _respond(request, result, base(request))

    async def conditional_delete(request: Request) -> Response:
        check_accept(request)
        condition = str(request.url.query)
        if not condition:
            raise FHIRError(
                405, f"DELETE {res_type} needs an id or search parameters", code="not-supported"
            )
        await in_tx(ix.conditional_delete, res_type, condition)
        return fhir_response(None, 204)

    async def type_history(request: Request) -> Response:
        check_accept(request)
        return await history_route(request, res_type, None)

    async def read(request: Request, id: str) -> Response:
        check_accept(request)
        result = await in_read(ix.read, res_type, _known_id(res_type, id))
        stored = result.stored
        wanted = request.headers.get("if-none-match")
        if wanted and wanted.strip() in (stored.etag, f'"{stored.version_id}"', "*"):
            return Response(status_code=304, headers=_resource_headers(result, base(request)))
        return _respond(request, result, base(request))

    async def update(request: Request, id: str) -> Response:
        check_accept(request)
        body = await read_json(request, limit)
        if_match = parse_etag(request.headers.get("if-match"))
        result = await in_tx(ix.update, res_type, _new_id(res_type, id), body, if_match=if_match)
        return _respond(request, result, base(request))

    async def patch(request: Request, id: str) -> Response:
        check_accept(request)
        raw = await read_body(request, limit, {"application/json-patch+json"})
        operations = parse_json(raw)
        if_match = parse_etag(request.headers.get("if-match"))
        result = await in_tx(
            ix.patch, res_type, _known_id(res_type, id), operations, if_match=if_match
        )
        return _respond(request, result, base(request))

    async def delete(request: Request, id: str) -> Response:
        check_accept(request)
        await in_tx(ix.delete, res_type, _known_id(res_type, id))
        return fhir_response(None, 204)

    async def instance_history(request: Request, id: str) -> Response:
        check_accept(request)
        return await history_route(request, res_type, _known_id(res_type, id))

    async def vread(request: Request, id: str, vid: str) -> Response:
        check_accept(request)
        result = await in_read(
            ix.vread, res_type, _known_id(res_type, id), _version(res_type, id, vid)
        )
        return _respond(request, result, base(request))

    path = f"/{res_type}"
    owned = definition.owner == ctx.registry.service
    add = router.add_api_route
    add(
        path,
        search_get,
        methods=["GET"],
        tags=tags,
        summary=f"Search {res_type}",
        openapi_extra={"parameters": search_params},
        name=f"search_{res_type}",
    )
    add(
        f"{path}/_search",
        search_post,
        methods=["POST"],
        tags=tags,
        summary=f"Search {res_type} (form body)",
        name=f"search_post_{res_type}",
        openapi_extra={
            "requestBody": {
                "content": {
                    "application/x-www-form-urlencoded": {
                        "schema": {"type": "object", "additionalProperties": {"type": "string"}}
                    }
                }
            }
        },
    )
    add(
        f"{path}/_history",
        type_history,
        methods=["GET"],
        tags=tags,
        summary=f"{res_type} history",
        name=f"history_{res_type}",
    )
    add(
        f"{path}/{{id}}",
        read,
        methods=["GET"],
        tags=tags,
        summary=f"Read {res_type}",
        name=f"read_{res_type}",
    )
    add(
        f"{path}/{{id}}/_history",
        instance_history,
        methods=["GET"],
        tags=tags,
        summary=f"History of one {res_type}",
        name=f"instance_history_{res_type}",
    )
    add(
        f"{path}/{{id}}/_history/{{vid}}",
        vread,
        methods=["GET"],
        tags=tags,
        summary=f"Read one version of a {res_type}",
        name=f"vread_{res_type}",
    )
    writes: list[tuple[str, Callable[..., Any], str, dict[str, Any] | None]] = [
        (path, create, "POST", JSON_BODY),
        (path, conditional_update, "PUT", JSON_BODY),
        (path, conditional_delete, "DELETE", None),
        (f"{path}/{{id}}", update, "PUT", JSON_BODY),
        (f"{path}/{{id}}", patch, "PATCH", PATCH_BODY),
        (f"{path}/{{id}}", delete, "DELETE", None),
    ]
    for route_path, handler, method, extra in writes:
        if owned:
            add(
                route_path,
                handler,
                methods=[method],
                tags=tags,
                summary=f"{method} {route_path}",
                name=f"{method.lower()}_{handler.__name__}_{res_type}",
                openapi_extra=extra,
                status_code=201 if handler is create else 200,
            )
        else:
            add(
                route_path,
                _read_only(ix, res_type),
                methods=[method],
                tags=tags,
                include_in_schema=False,
            )


def _read_only(ix: Interactions, res_type: str) -> Callable[..., Any]:
    async def refuse(request: Request) -> Response:
        ix.writable(res_type)  # raises the 405 naming the owner
        return fhir_response(None, 405)

    return refuse
