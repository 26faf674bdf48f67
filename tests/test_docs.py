"""/docs works on a network without internet access: its assets come from the service."""

from __future__ import annotations

import re
from collections.abc import Callable

import httpx

from tests.auth_support import staff_headers
from tests.fhir_asserts import assert_outcome


def _root(client: httpx.AsyncClient) -> httpx.AsyncClient:
    """The same app addressed at its root rather than at the FHIR base."""
    return httpx.AsyncClient(
        transport=client._transport, base_url="http://testserver", headers=staff_headers()
    )


def _loaded_urls(html: str) -> list[str]:
    return re.findall(r"""(?:src|href)=["']([^"']+)|url: ?["']([^"']+)""", html)


async def test_docs_page_loads_only_local_assets(intake: httpx.AsyncClient):
    async with _root(intake) as root:
        page = await root.get("/docs")
        assert page.status_code == 200
        assert "cdn" not in page.text and "https://" not in page.text
        urls = [u for pair in _loaded_urls(page.text) for u in pair if u]
        assert "/docs/assets/swagger-ui-bundle.js" in urls
        assert "/docs/assets/swagger-ui.css" in urls
        assert all(u.startswith("/") for u in urls), urls
        for url, kind, marker in (
            ("/docs/assets/swagger-ui-bundle.js", "javascript", b"SwaggerUIBundle"),
            ("/docs/assets/swagger-ui.css", "text/css", b".swagger-ui"),
            ("/docs/assets/favicon-32x32.png", "image/png", b"PNG"),
        ):
            asset = await root.get(url)
            assert asset.status_code == 200
            assert kind in asset.headers["content-type"]
            assert marker in asset.content[:200_000]
        assert (await root.get("/openapi.json")).json()["openapi"].startswith("3.")
        assert (await root.get("/docs/oauth2-redirect")).status_code == 200
        # Nothing but the named files is served, and ReDoc (CDN only) is off.
        for missing in ("/docs/assets/index.html", "/docs/assets/..%2F__init__.py", "/redoc"):
            assert_outcome(await root.get(missing), 404, "not-found")


async def test_docs_assets_url_names_where_assets_come_from(
    service_client: Callable[..., httpx.AsyncClient],
):
    client = service_client("intake", docs_assets_url="https://assets.clinic.example/swagger/")
    async with client, _root(client) as root:
        page = (await root.get("/docs")).text
    assert "https://assets.clinic.example/swagger/swagger-ui-bundle.js" in page
    assert "https://assets.clinic.example/swagger/swagger-ui.css" in page
    assert "cdn.jsdelivr" not in page
