"""System-level handlers: the CapabilityStatement, Bundles and history at every level."""

from __future__ import annotations

import copy

from fastapi import Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from shared.auth.setup import rest_security
from shared.fhir.capability import capability_statement
from shared.fhir.dates import date_range
from shared.fhir.http import check_accept, fhir_response, prefer, read_json
from shared.fhir.rest.context import Ctx, FHIRContext
from shared.fhir.rest.params import instant_param, int_param, strict
from shared.fhir.result_bundles import history


async def metadata(request: Request, ctx: Ctx) -> Response:
    """GET [base]/metadata."""
    check_accept(request)
    statement = capability_statement(
        ctx.registry, ctx.base(request), ctx.version, ctx.settings.canonical_base
    )
    statement["rest"][0]["security"] = rest_security(ctx.settings, request.app.state.auth)
    return fhir_response(statement)


async def bundle(request: Request, ctx: Ctx) -> Response:
    """POST [base]: a transaction or batch Bundle."""
    check_accept(request)
    body = await read_json(request, ctx.settings.max_body_bytes)
    base, return_pref, handling = (
        ctx.base(request),
        prefer(request.headers, "return"),
        strict(request),
    )

    async def process() -> dict:
        # Each attempt gets its own copy: processing may change the entries it is given.
        entries = copy.deepcopy(body)
        return await run_in_threadpool(ctx.bundles.process, entries, base, return_pref, handling)

    # A transaction refused for a missing replica runs again once it has been fetched.
    response = await ctx.with_replicas(process)
    return fhir_response(response)


async def system_history(request: Request, ctx: Ctx) -> Response:
    """GET [base]/_history."""
    check_accept(request)
    return await history_page(request, ctx, None, None)


async def history_page(
    request: Request, ctx: FHIRContext, res_type: str | None, res_id: str | None
) -> Response:
    """A page of history at system, type or instance level (`_since`, `_at`, `_count`)."""
    settings = ctx.settings
    count = int_param(request, "_count", settings.default_page_size, settings.max_page_size)
    offset = int_param(request, "_offset", 0, 10**9)
    since = instant_param(request.query_params.get("_since"), "_since")
    at = request.query_params.get("_at")
    at_or_before = date_range(at)[1] if at and instant_param(at, "_at") else None
    versions, total = await ctx.query(
        request,
        lambda session: ctx.interactions.history(
            session,
            res_type,
            res_id,
            since=since,
            at_or_before=at_or_before,
            count=count,
            offset=offset,
        ),
    )
    base = ctx.base(request)
    url = "/".join(p for p in (base, res_type, res_id) if p) + "/_history"
    applied = [(k, v) for k, v in request.query_params.multi_items() if k in ("_since", "_at")]
    return fhir_response(history(base, url, versions, total, count, offset, applied))
