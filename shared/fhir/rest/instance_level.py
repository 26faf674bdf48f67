"""Instance-level handlers: read, vread, update, patch, delete and instance history."""

from __future__ import annotations

from fastapi import Request
from fastapi.responses import Response

from shared.fhir.http import check_accept, fhir_response, read_body, read_json
from shared.fhir.interactions import parse_etag
from shared.fhir.rest.context import Ctx, ResType
from shared.fhir.rest.params import known_id, new_id, version_id
from shared.fhir.rest.respond import resource_headers, respond
from shared.fhir.rest.system import history_page
from shared.fhir.validation import parse_json

PATCH_TYPES = {"application/json-patch+json"}


async def read(request: Request, id: str, ctx: Ctx, res_type: ResType) -> Response:
    """GET [type]/[id]; If-None-Match gives 304."""
    check_accept(request)
    result = await ctx.read(ctx.interactions.read, res_type, known_id(res_type, id))
    stored = result.stored
    wanted = request.headers.get("if-none-match")
    if wanted and wanted.strip() in (stored.etag, f'"{stored.version_id}"', "*"):
        return Response(status_code=304, headers=resource_headers(result, ctx.base(request)))
    return respond(request, result, ctx.base(request))


async def vread(request: Request, id: str, vid: str, ctx: Ctx, res_type: ResType) -> Response:
    """GET [type]/[id]/_history/[vid]."""
    check_accept(request)
    result = await ctx.read(
        ctx.interactions.vread, res_type, known_id(res_type, id), version_id(res_type, id, vid)
    )
    return respond(request, result, ctx.base(request))


async def update(request: Request, id: str, ctx: Ctx, res_type: ResType) -> Response:
    """PUT [type]/[id] (If-Match; an unknown id is created)."""
    check_accept(request)
    body = await read_json(request, ctx.settings.max_body_bytes)
    if_match = parse_etag(request.headers.get("if-match"))
    result = await ctx.write(
        ctx.interactions.update, res_type, new_id(res_type, id), body, if_match=if_match
    )
    return respond(request, result, ctx.base(request))


async def patch(request: Request, id: str, ctx: Ctx, res_type: ResType) -> Response:
    """PATCH [type]/[id] with a JSON Patch."""
    check_accept(request)
    raw = await read_body(request, ctx.settings.max_body_bytes, PATCH_TYPES)
    operations = parse_json(raw)
    if_match = parse_etag(request.headers.get("if-match"))
    result = await ctx.write(
        ctx.interactions.patch, res_type, known_id(res_type, id), operations, if_match=if_match
    )
    return respond(request, result, ctx.base(request))


async def delete(request: Request, id: str, ctx: Ctx, res_type: ResType) -> Response:
    """DELETE [type]/[id]."""
    check_accept(request)
    await ctx.write(ctx.interactions.delete, res_type, known_id(res_type, id))
    return fhir_response(None, 204)


async def instance_history(request: Request, id: str, ctx: Ctx, res_type: ResType) -> Response:
    """GET [type]/[id]/_history."""
    check_accept(request)
    return await history_page(request, ctx, res_type, known_id(res_type, id))


async def refuse_write(ctx: Ctx, res_type: ResType) -> Response:
    """Any write to a replicated type: 405 naming the owner."""
    ctx.interactions.writable(res_type)  # raises the 405 naming the owner
    return fhir_response(None, 405)
