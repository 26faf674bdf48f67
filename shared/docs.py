"""/docs without a CDN: Swagger UI's script and styles come from the installed package.

FastAPI's own /docs and /redoc pages load their assets from a public CDN, which clinic networks
often block. Here /docs loads them from /docs/assets (the swagger-ui-bundle-v2 package), or from
`docs_assets_url` when a deployment names its own copy; ReDoc, which has no packaged copy, is off.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import FileResponse, HTMLResponse, Response
from starlette.routing import BaseRoute
from swagger_ui_bundle import swagger_ui_path

from shared.fhir.errors import not_found
from shared.settings import ServiceSettings

ASSETS_PATH = "/docs/assets"
ASSETS = {
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui.css": "text/css; charset=utf-8",
    "favicon-32x32.png": "image/png",
}
# The files only change with the package version, which is in no URL: a day is a safe cache.
_CACHE = {"Cache-Control": "public, max-age=86400"}


def install_docs(app: FastAPI, settings: ServiceSettings) -> None:
    """Replace FastAPI's CDN-based /docs and /redoc by a Swagger UI served from the package."""
    replaced = {app.docs_url, app.redoc_url, app.swagger_ui_oauth2_redirect_url}
    # FastAPI registers its pages in its constructor; take them out rather than change it.
    app.router.routes[:] = [r for r in app.router.routes if _path(r) not in replaced]
    app.docs_url = "/docs"
    app.redoc_url = None
    app.swagger_ui_oauth2_redirect_url = "/docs/oauth2-redirect"
    external = settings.docs_assets_url.rstrip("/")
    folder = Path(str(swagger_ui_path))

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "").rstrip("/")
        base = external or f"{root}{ASSETS_PATH}"
        return get_swagger_ui_html(
            openapi_url=f"{root}{app.openapi_url}",
            title=f"{app.title} - Swagger UI",
            swagger_js_url=f"{base}/swagger-ui-bundle.js",
            swagger_css_url=f"{base}/swagger-ui.css",
            swagger_favicon_url=f"{base}/favicon-32x32.png",
            oauth2_redirect_url=f"{root}{app.swagger_ui_oauth2_redirect_url}",
        )

    @app.get("/docs/oauth2-redirect", include_in_schema=False)
    async def swagger_ui_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @app.get(ASSETS_PATH + "/{name}", include_in_schema=False)
    async def swagger_ui_asset(name: str) -> Response:
        # Only the files the page uses, named in ASSETS: no path reaches the file system.
        if name not in ASSETS:
            raise not_found(f"{ASSETS_PATH}/{name[:64]} is not a documentation asset")
        return FileResponse(folder / name, media_type=ASSETS[name], headers=_CACHE)


def _path(route: BaseRoute) -> str | None:
    return getattr(route, "path", None)
