"""Type-level handlers: search (GET and POST), create, conditional update and delete."""

from __future__ import annotations

from urllib.parse import parse_qsl

from fastapi import Request
from fastapi.responses import Response

from shared.fhir.errors import FHIRError, bad_request
from shared.fhir.http import check_accept, fhir_response, read_body, read_json
from shared.fhir.interactions import parse_etag
from shared.fhir.rest.context import Ctx, FHIRContext, ResType
from shared.fhir.rest.params import search_pairs, strict
from shared.fhir.rest.respond import respond
from shared.fhir.rest.system import history_page
from shared.fhir.result_bundles import searchset

FORM = {"application/x-www-form-urlencoded"}


async def _search(
    request: Request, ctx: FHIRContext, res_type: str, extra: list[tuple[str, str]] | None
) -> Response:
    check_accept(request)
    pairs = search_pairs(request, extra)
    is_strict = strict(request)
    found = await ctx.query(
        request, lambda s: ctx.interactions.search(s, res_type, pairs, strict=is_strict)
    )
    body = searchset(ctx.base(request), found.query, found.resources, found.total, found.included)
    return fhir_response(body)


async def search_get(request: Request, ctx: Ctx, res_type: ResType) -> Response:
    """GET [type]?params."""
    return await _search(request, ctx, res_type, None)


async def search_post(request: Request, ctx: Ctx, res_type: ResType) -> Response:
    """POST [type]/_search with the parameters as a form body."""
    settings = ctx.settings
    raw = await read_body(request, settings.max_body_bytes, FORM)
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
        raise ctx.interactions.limits.exceeded(
            "The form body has too many parameters",
            settings.max_query_params,
            "MAX_QUERY_PARAMS",
            "_search",
        ) from None
    return await _search(request, ctx, res_type, form)


async def create(request: Request, ctx: Ctx, res_type: ResType) -> Response:
    """POST [type], conditional on If-None-Exist when given."""
    check_accept(request)
    body = await read_json(request, ctx.settings.max_body_bytes)
    condition = request.headers.get("if-none-exist")
    result = await ctx.write(ctx.interactions.create, res_type, body, if_none_exist=condition)
    return respond(request, result, ctx.base(request))


async def conditional_update(request: Request, ctx: Ctx, res_type: ResType) -> Response:
    """PUT [type]?params."""
    check_accept(request)
    body = await read_json(request, ctx.settings.max_body_bytes)
    condition = str(request.url.query)
    if not condition:
        raise FHIRError(
            405, f"PUT {res_type} needs an id or search parameters", code="not-supported"
        )
    if_match = parse_etag(request.headers.get("if-match"))
    result = await ctx.write(
        ctx.interactions.conditional_update, res_type, condition, body, if_match=if_match
    )
    return respond(request, result, ctx.base(request))


async def conditional_delete(request: Request, ctx: Ctx, res_type: ResType) -> Response:
    """DELETE [type]?params."""
    check_accept(request)
    condition = str(request.url.query)
    if not condition:
        raise FHIRError(
            405, f"DELETE {res_type} needs an id or search parameters", code="not-supported"
        )
    await ctx.write(ctx.interactions.conditional_delete, res_type, condition)
    return fhir_response(None, 204)


async def type_history(request: Request, ctx: Ctx, res_type: ResType) -> Response:
    """GET [type]/_history."""
    check_accept(request)
    return await history_page(request, ctx, res_type, None)
