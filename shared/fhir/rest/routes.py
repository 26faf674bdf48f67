"""The route table: every interaction of every declared type, and the system routes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Depends, Request

from shared.auth.needs import Need, need_of, needs
from shared.fhir.errors import FHIRError
from shared.fhir.registry import ResourceDef
from shared.fhir.rest import instance_level as instance
from shared.fhir.rest import system
from shared.fhir.rest import type_level as by_type
from shared.fhir.rest.context import FHIRContext
from shared.fhir.rest.operations import add_operation_routes

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
FORM_BODY = {
    "requestBody": {
        "content": {
            "application/x-www-form-urlencoded": {
                "schema": {"type": "object", "additionalProperties": {"type": "string"}}
            }
        }
    }
}


def build_router(ctx: FHIRContext) -> APIRouter:
    """All FHIR routes of one service, under its base path."""
    router = APIRouter(prefix=ctx.settings.base_path, dependencies=[Depends(_declared)])
    add = router.add_api_route
    add(
        "/metadata",
        system.metadata,
        methods=["GET"],
        tags=["system"],
        summary="CapabilityStatement",
        dependencies=needs(NO_SCOPE),
    )
    # Each entry is checked against its own scope, before anything is written.
    bundle_need = needs(NO_SCOPE)
    add(
        "/",
        system.bundle,
        methods=["POST"],
        tags=["system"],
        summary="Transaction or batch Bundle",
        openapi_extra=JSON_BODY,
        dependencies=bundle_need,
    )
    # HAPI and most clients POST Bundles to the base without a trailing slash.
    add("", system.bundle, methods=["POST"], include_in_schema=False, dependencies=bundle_need)
    add(
        "/_history",
        system.system_history,
        methods=["GET"],
        tags=["system"],
        summary="System history",
        # Every type's changes: only a token that may read every type.
        dependencies=needs(Need("*", "r")),
    )
    # Before the type routes: `/Patient/$everything` must not be read as `/Patient/{id}`.
    add_operation_routes(router, ctx)
    for definition in ctx.registry.resources.values():
        _type_routes(
            router, definition, owned=ctx.registry.owns(definition.type) and definition.api_writable
        )
    return router


# Declared, but asking nothing at the route itself: discovery (public), a replica's 405, and
# Bundles (each entry checked on its own).
NO_SCOPE = Need(res_type="")


def _declared(request: Request) -> None:
    """Fail closed: a FHIR route registered without a Need answers 403 to everyone."""
    if need_of(request.scope.get("route")) is None:
        raise FHIRError(403, "This route declares no scope, so it serves nobody", code="forbidden")


def _type_routes(router: APIRouter, definition: ResourceDef, *, owned: bool) -> None:
    """Register the interactions of one resource type (writes refused on a replica)."""
    res_type = definition.type
    path = f"/{res_type}"
    tags = [res_type]
    search_params = [
        {"name": p.name, "in": "query", "required": False, "schema": {"type": "string"}}
        for p in definition.params
    ]
    reads: list[tuple[str, Callable[..., Any], str, dict[str, Any] | None, str]] = [
        (path, by_type.search_get, f"Search {res_type}", {"parameters": search_params}, "s"),
        (f"{path}/_history", by_type.type_history, f"{res_type} history", None, "r"),
        (f"{path}/{{id}}", instance.read, f"Read {res_type}", None, "r"),
        (
            f"{path}/{{id}}/_history",
            instance.instance_history,
            f"History of one {res_type}",
            None,
            "r",
        ),
        (
            f"{path}/{{id}}/_history/{{vid}}",
            instance.vread,
            f"Read one version of a {res_type}",
            None,
            "r",
        ),
    ]
    for route_path, handler, summary, extra, letter in reads:
        router.add_api_route(
            route_path,
            handler,
            methods=["GET"],
            tags=tags,
            summary=summary,
            openapi_extra=extra,
            name=f"{handler.__name__}_{res_type}",
            dependencies=needs(Need(res_type, letter)),
        )
    router.add_api_route(
        f"{path}/_search",
        by_type.search_post,
        methods=["POST"],
        tags=tags,
        summary=f"Search {res_type} (form body)",
        openapi_extra=FORM_BODY,
        name=f"search_post_{res_type}",
        dependencies=needs(Need(res_type, "s")),
    )
    writes: list[tuple[str, Callable[..., Any], str, dict[str, Any] | None, str]] = [
        (path, by_type.create, "POST", JSON_BODY, "c"),
        (path, by_type.conditional_update, "PUT", JSON_BODY, "u"),
        (path, by_type.conditional_delete, "DELETE", None, "d"),
        (f"{path}/{{id}}", instance.update, "PUT", JSON_BODY, "u"),
        (f"{path}/{{id}}", instance.patch, "PATCH", PATCH_BODY, "u"),
        (f"{path}/{{id}}", instance.delete, "DELETE", None, "d"),
    ]
    for route_path, handler, method, extra, letter in writes:
        # A replica refuses writes (405) whatever the scopes: said before any scope check.
        need = needs(Need(res_type, letter) if owned else NO_SCOPE)
        if owned:
            router.add_api_route(
                route_path,
                handler,
                methods=[method],
                tags=tags,
                summary=f"{method} {route_path}",
                name=f"{method.lower()}_{handler.__name__}_{res_type}",
                openapi_extra=extra,
                status_code=201 if handler is by_type.create else 200,
                dependencies=need,
            )
        else:
            router.add_api_route(
                route_path,
                instance.refuse_write,
                methods=[method],
                tags=tags,
                include_in_schema=False,
                dependencies=need,
            )
