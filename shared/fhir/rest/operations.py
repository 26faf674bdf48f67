"""Routes of the declared operations ($name) and of their OperationDefinitions."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from shared.auth.needs import Need, needs
from shared.fhir.errors import FHIRError
from shared.fhir.http import JSON_TYPES, check_accept, fhir_response, negotiate, read_body
from shared.fhir.operations import Operation, OperationCall, OperationResult
from shared.fhir.references import ID_PATTERN
from shared.fhir.registry import Registry
from shared.fhir.rest.context import FHIRContext
from shared.fhir.validation import parse_json


def declared_operations(registry: Registry) -> list[tuple[str | None, Operation]]:
    """Every operation a service serves, with the type it is declared on (None: system)."""
    found: list[tuple[str | None, Operation]] = [(None, op) for op in registry.operations]
    for definition in registry.resources.values():
        found.extend((definition.type, op) for op in definition.operations)
    return found


def operation_definitions(registry: Registry, canonical_base: str) -> dict[str, dict[str, Any]]:
    """The OperationDefinition resources of a service, by id."""
    return {
        op.definition_id(res_type): op.operation_definition(res_type, canonical_base)
        for res_type, op in declared_operations(registry)
    }


def operation_need(op: Operation, res_type: str | None) -> Need:
    """The scope an operation declares; undeclared, it needs every letter on its type."""
    if op.scope:
        return Need(scope=op.scope)
    return Need(res_type or "*", "cruds")


def add_operation_routes(router: APIRouter, ctx: FHIRContext) -> None:
    """Serve each declared operation before the `/{type}/{id}` routes can claim its path."""
    registry, settings = ctx.registry, ctx.settings
    for res_type, op in declared_operations(registry):
        paths = []
        if res_type is None:
            paths.append(f"/${op.name}")
        else:
            if "type" in op.levels:
                paths.append(f"/{res_type}/${op.name}")
            if "instance" in op.levels:
                paths.append(f"/{res_type}/{{id}}/${op.name}")
        for path in paths:
            endpoint = _endpoint(op, res_type, ctx, instance="{id}" in path)
            # One route per method: a shared route gives every method the same OpenAPI
            # operationId, which code generators reject.
            for method in sorted(op.methods):
                router.add_api_route(
                    path,
                    endpoint,
                    methods=[method],
                    tags=[res_type or "system"],
                    summary=f"${op.name}: {op.description}",
                    operation_id=f"{method.lower()}_{path.strip('/')}".replace("/", "_")
                    .replace("{id}", "id")
                    .replace("$", "op_"),
                    openapi_extra=_openapi(op),
                    dependencies=needs(operation_need(op, res_type)),
                )

    definitions = operation_definitions(registry, settings.canonical_base)

    @router.get(
        "/OperationDefinition/{id}",
        tags=["system"],
        summary="An OperationDefinition",
        dependencies=needs(Need("OperationDefinition", "r")),
    )
    async def read_definition(request: Request, id: str) -> Response:
        check_accept(request)
        if id not in definitions:
            raise FHIRError(404, f"OperationDefinition/{id[:80]} is not known", code="not-found")
        return fhir_response(definitions[id])

    @router.get(
        "/OperationDefinition",
        tags=["system"],
        summary="Every OperationDefinition",
        dependencies=needs(Need("OperationDefinition", "s")),
    )
    async def list_definitions(request: Request) -> Response:
        check_accept(request)
        where = ctx.base(request)
        return fhir_response(
            {
                "resourceType": "Bundle",
                "type": "searchset",
                "total": len(definitions),
                "entry": [
                    {
                        "fullUrl": f"{where}/OperationDefinition/{op_id}",
                        "resource": definition,
                        "search": {"mode": "match"},
                    }
                    for op_id, definition in definitions.items()
                ],
            }
        )


def _endpoint(
    op: Operation, res_type: str | None, ctx: FHIRContext, *, instance: bool
) -> Callable[..., Awaitable[Response]]:
    settings, interactions = ctx.settings, ctx.interactions

    async def invoke(request: Request, res_id: str | None) -> Response:
        media = (
            negotiate(
                request.headers.get("accept"),
                request.query_params.get("_format"),
                list(op.renderers),
            )
            if op.renderers
            else None
        )
        if media is None:
            check_accept(request)
        if res_id is not None and not ID_PATTERN.fullmatch(res_id):
            raise FHIRError(404, f"{res_type}/{res_id[:80]} is not known", code="not-found")
        if request.method == "GET":
            # `_format` chooses the answer's format (checked above), not an input.
            query = [(k, v) for k, v in request.query_params.multi_items() if k != "_format"]
            inputs = op.parse_query(query)
        else:
            raw = b""
            if _has_body(request):
                raw = await read_body(request, settings.max_body_bytes, JSON_TYPES)
            inputs = op.parse_parameters(parse_json(raw) if raw.strip() else None)
        where = ctx.base(request)
        # The operation's own URL, as the client sees it, for paging links.
        url = where + request.url.path.split(settings.base_path, 1)[-1]
        # Before any session: a slow peer must not hold a transaction (or SQLite's lock).
        prepared = await op.prepare(inputs, settings) if op.prepare is not None else None

        def run(session: Session) -> OperationResult:
            call = OperationCall(
                session, interactions, where, res_type, res_id, inputs, url, prepared
            )
            return op.handler(call)

        # A writing operation runs in a unit of work, so its writes pass the write rules and
        # the outbox as any interaction's do.
        result = await (ctx.write(run) if op.affects_state else ctx.query(request, run))
        # Caches must keep the JSON and the pictures of one URL apart.
        vary = {"Vary": "Accept"} if op.renderers else None
        if media is None or result.body.get("resourceType") == "OperationOutcome":
            return fhir_response(result.body, status=result.status, headers=vary)
        # Drawing is CPU work: off the event loop, after the session has closed.
        image = await run_in_threadpool(op.renderers[media], result.body)
        return Response(image, status_code=result.status, media_type=media, headers=vary)

    # FastAPI documents what the signature declares: the id only where the path has one.
    if instance:

        async def on_instance(request: Request, id: str) -> Response:
            return await invoke(request, id)

        endpoint = on_instance
    else:

        async def on_type(request: Request) -> Response:
            return await invoke(request, None)

        endpoint = on_type
    endpoint.__name__ = f"op_{(res_type or 'system').lower()}_{op.name.replace('-', '_')}"
    return endpoint


def _openapi(op: Operation) -> dict[str, Any]:
    """Query parameters and the optional Parameters body, for /docs and API fuzzers."""
    primitive = [p for p in op.inputs if p.type[:1].islower()]
    extra: dict[str, Any] = {
        "parameters": [
            {"name": p.name, "in": "query", "required": False, "schema": {"type": "string"}}
            for p in primitive
        ]
    }
    if op.renderers:
        extra["parameters"].append(
            {
                "name": "_format",
                "in": "query",
                "required": False,
                "schema": {"type": "string"},
                "description": "json, or one of "
                + ", ".join(sorted(op.renderers))
                + " (short names png, svg): overrides Accept",
            }
        )
        extra["responses"] = {
            "200": {
                "description": "The operation's Parameters, or their chart as the Accept asks",
                "content": {
                    "application/fhir+json": {"schema": {"type": "object"}},
                    **{
                        media: {"schema": {"type": "string", "format": "binary"}}
                        for media in op.renderers
                    },
                },
            }
        }
    if "POST" in op.methods:
        extra["requestBody"] = {
            "required": False,
            "content": {"application/fhir+json": {"schema": {"type": "object"}}},
        }
    return extra


def _has_body(request: Request) -> bool:
    length = request.headers.get("content-length")
    return length != "0" if length is not None else "transfer-encoding" in request.headers
