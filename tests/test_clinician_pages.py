"""The clinician pages (/app): OpenID Connect sign-in at a real dev issuer, the server-side
session behind its cookie, and the API's scopes and practice isolation applied to every page."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from services.outcomes.app import create_app
from services.outcomes.web.oidc import OIDCClient, SignInError
from tests.conftest import BACKENDS, make_settings
from tests.issuer_support import Issuer, running_issuer, sign_in_at
from tests.pages_support import NAME, PATIENT, follow_sign_in, pages_settings, seed
from tooling.dev_issuer import WEB_CLIENT
from tooling.dev_issuer.state import KeyRing, add_dev_user

BASE = "https://pages.test"


@pytest.fixture(scope="module")
def issuer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Issuer]:
    with running_issuer(tmp_path_factory.mktemp("pages-issuer") / "state") as running:
        yield running


@pytest.fixture
async def app(database_url: str, issuer: Issuer) -> AsyncIterator[Any]:
    app = create_app(make_settings("outcomes", database_url, **pages_settings(issuer, BASE)))
    await seed(app, issuer)
    yield app
    app.state.fhir.database.dispose()


def browser(app: Any) -> httpx.AsyncClient:
    """A cookie-keeping client of the pages (https, so Secure cookies go back)."""
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE, timeout=30)


async def signed_in(
    pages: httpx.AsyncClient, issuer: Issuer, user: str = "psychiatrist-a", path: str = "/app/"
) -> httpx.Response:
    """Open `path` signed out, go through the issuer's form as `user`, land back on `path`."""
    first = await pages.get(path)
    assert first.status_code == 303 and first.headers["location"].startswith("/app/login?next=")
    login = await pages.get(first.headers["location"])
    callback = await asyncio.to_thread(follow_sign_in, pages, issuer, login, user)
    back = await pages.get(callback)
    assert back.status_code == 303, back.text[:500]
    assert back.headers["location"] == path
    return back


async def test_a_clinician_signs_in_and_sees_the_patient_name_and_latest_scores(
    app: Any, issuer: Issuer
):
    async with browser(app) as pages:
        await signed_in(pages, issuer, path=f"/app/patients/{PATIENT}")
        page = await pages.get(f"/app/patients/{PATIENT}")
    assert page.status_code == 200, page.text[:500]
    assert page.headers["content-type"].startswith("text/html")
    assert page.headers["cache-control"] == "no-store"
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    html = page.text
    assert f'<h1 id="patient-name">{NAME}</h1>' in html
    assert "Signed in as <strong>Dr Anna de Vries</strong>" in html
    phq9 = html[html.index('data-measure="phq9-total"') :]
    phq9 = phq9[: phq9.index("</tr>")]
    assert "PHQ-9 total score" in phq9 and ">18 <" in phq9 and ">7 <" in phq9
    assert "\u221211" in phq9 and "Mild" in phq9 and "Yes" in phq9  # minus sign, band, response
    assert 'id="response"' in html and "\u221261 %" in html


async def test_the_session_cookie_is_httponly_secure_and_samesite(app: Any, issuer: Issuer):
    async with browser(app) as pages:
        first = await pages.get("/app/login?next=/app/")
        login_cookie = first.headers["set-cookie"]
        callback = await asyncio.to_thread(follow_sign_in, pages, issuer, first, "therapist-a")
        back = await pages.get(callback)
    for header in (login_cookie, back.headers.get_list("set-cookie")[0]):
        flags = [part.strip().lower() for part in header.split(";")]
        assert {"httponly", "secure", "samesite=lax", "path=/app"} <= set(flags), header
    assert back.headers.get_list("set-cookie")[0].startswith("kemdr_session=")
    # The access token stays on the server: neither cookie nor redirect carries it.
    assert "eyJ" not in " ".join(back.headers.get_list("set-cookie"))


async def test_without_a_session_pages_redirect_to_sign_in_and_charts_are_refused(app: Any):
    async with browser(app) as pages:
        for path in ("/app/", f"/app/patients/{PATIENT}", "/app/patients/x?name=a"):
            response = await pages.get(path)
            assert response.status_code == 303, path
            location = urlsplit(response.headers["location"])
            assert location.path == "/app/login"
            assert parse_qs(location.query)["next"] == [path]
        chart = await pages.get(f"/app/charts/patients/{PATIENT}")
        assert chart.status_code == 401
        # A forged session id is no session.
        pages.cookies.set("kemdr_session", "forged", domain="pages.test", path="/app")
        assert (await pages.get("/app/")).status_code == 303


@BACKENDS
async def test_a_practice_b_clinician_cannot_see_a_practice_a_patient(app: Any, issuer: Issuer):
    async with browser(app) as pages:
        await signed_in(pages, issuer, "psychiatrist-b")
        page = await pages.get(f"/app/patients/{PATIENT}")
        assert page.status_code == 404
        assert NAME not in page.text and "Maria" not in page.text
        assert "not yours" in page.text
        programme = await pages.get("/app/")
        assert programme.status_code == 200
        assert "Joost Smit" in programme.text and "Jansen" not in programme.text
    async with browser(app) as pages:
        await signed_in(pages, issuer, "psychiatrist-a")
        programme = await pages.get("/app/")
        assert NAME in programme.text and "Smit" not in programme.text
        assert f'href="/app/patients/{PATIENT}"' in programme.text


async def test_a_state_that_does_not_match_is_refused_at_the_callback(app: Any, issuer: Issuer):
    async with browser(app) as pages:
        login = await pages.get("/app/login?next=/app/")
        callback = await asyncio.to_thread(follow_sign_in, pages, issuer, login, "therapist-a")
        forged = callback.replace("state=", "state=x")
        refused = await pages.get(forged)
        assert refused.status_code == 400 and "state" in refused.text
        assert "kemdr_session" not in refused.headers.get("set-cookie", "")
        # The sign-in was used up by the refusal: the genuine callback is refused as well.
        assert (await pages.get(callback)).status_code == 400


async def test_a_callback_in_another_browser_is_refused(app: Any, issuer: Issuer):
    async with browser(app) as victim, browser(app) as attacker:
        login = await attacker.get("/app/login?next=/app/")
        callback = await asyncio.to_thread(follow_sign_in, attacker, issuer, login, "therapist-a")
        # Login CSRF: the attacker's callback link opened in the victim's browser.
        refused = await victim.get(callback)
        assert refused.status_code == 400 and "set-cookie" not in refused.headers


async def test_next_never_leaves_the_pages(app: Any, issuer: Issuer):
    async with browser(app) as pages:
        login = await pages.get("/app/login?next=https://evil.test/")
        callback = await asyncio.to_thread(follow_sign_in, pages, issuer, login, "therapist-a")
        back = await pages.get(callback)
        assert back.headers["location"] == "/app/"


async def test_sign_out_needs_the_page_token_and_ends_the_session(app: Any, issuer: Issuer):
    async with browser(app) as pages:
        await signed_in(pages, issuer)
        forged = await pages.post("/app/logout", data={"csrf": "guess"})
        assert forged.status_code == 403
        page = await pages.get("/app/")
        assert page.status_code == 200
        csrf = page.text.split('name="csrf" value="')[1].split('"')[0]
        out = await pages.post("/app/logout", data={"csrf": csrf})
        assert out.status_code == 200 and "signed out" in out.text
        assert 'kemdr_session=""' in out.headers["set-cookie"]
        assert (await pages.get("/app/")).status_code == 303


async def test_an_expired_session_goes_back_to_sign_in(
    database_url: str, issuer: Issuer, tmp_path: Path
):
    settings = pages_settings(issuer, BASE) | {"web_session_minutes": 0.05}
    app = create_app(make_settings("outcomes", database_url, **settings))
    await seed(app, issuer)
    async with browser(app) as pages:
        await signed_in(pages, issuer)
        assert (await pages.get("/app/")).status_code == 200
        await asyncio.sleep(3.2)
        again = await pages.get("/app/")
        assert again.status_code == 303 and again.headers["location"].startswith("/app/login")
    app.state.fhir.database.dispose()


async def test_without_a_client_sign_in_says_it_is_not_set_up(database_url: str, issuer: Issuer):
    settings = pages_settings(issuer, BASE) | {"web_client_id": ""}
    app = create_app(make_settings("outcomes", database_url, **settings))
    async with browser(app) as pages:
        response = await pages.get("/app/login")
    assert response.status_code == 503 and "OUTCOMES_WEB_CLIENT_ID" in response.text
    app.state.fhir.database.dispose()


async def test_a_wrong_password_at_the_issuer_creates_no_session(app: Any, issuer: Issuer):
    async with browser(app) as pages:
        login = await pages.get("/app/login?next=/app/")
        url = login.headers["location"]
        answer = await asyncio.to_thread(sign_in_at, issuer.url, url, "psychiatrist-a", "nope")
        assert answer.status_code == 200 and "location" not in answer.headers
        assert (await pages.get("/app/")).status_code == 303


async def test_a_clinician_whose_scopes_do_not_cover_patients_gets_a_403_page(
    app: Any, issuer: Issuer
):
    add_dev_user(
        issuer.directory,
        "scheduler-a",
        name="Eva Visser",
        role="Scheduler",
        fhir_user="Practitioner/dev-scheduler-a",
        practices=["Organization/practice-a"],
        scope="user/Appointment.rs",
    )
    async with browser(app) as pages:
        await signed_in(pages, issuer, "scheduler-a", path=f"/app/patients/{PATIENT}")
        page = await pages.get(f"/app/patients/{PATIENT}")
    assert page.status_code == 403 and "does not allow" in page.text
    assert NAME not in page.text


def _id_token(issuer: Issuer, **claims: Any) -> str:
    kid, key = KeyRing(issuer.directory / "keys.json").signing_key()
    now = int(time.time())
    body = {
        "iss": issuer.url,
        "sub": "psychiatrist-a",
        "aud": WEB_CLIENT,
        "iat": now,
        "exp": now + 300,
        "nonce": "n-1",
        **claims,
    }
    return jwt.encode({k: v for k, v in body.items() if v is not None}, key, "RS256", {"kid": kid})


@pytest.mark.parametrize(
    "claims",
    [{"nonce": "n-2"}, {"nonce": None}, {"aud": "another-client"}, {"iss": "https://evil.test"},
     {"exp": 1}, {"azp": "another-client"}],
    ids=["other nonce", "no nonce", "other audience", "other issuer", "expired", "other azp"],
)  # fmt: skip
async def test_the_id_token_must_be_for_this_client_and_sign_in(
    issuer: Issuer, database_url: str, claims: dict[str, Any]
):
    settings = make_settings("outcomes", database_url, **pages_settings(issuer, BASE))
    client = OIDCClient(settings)  # type: ignore[arg-type]
    assert (await client.identity(_id_token(issuer), "n-1"))["sub"] == "psychiatrist-a"
    with pytest.raises(SignInError):
        await client.identity(_id_token(issuer, **claims), "n-1")
    forged = jwt.encode(
        jwt.decode(_id_token(issuer), options={"verify_signature": False}),
        rsa.generate_private_key(public_exponent=65537, key_size=2048),
        "RS256",
        {"kid": jwt.get_unverified_header(_id_token(issuer))["kid"]},
    )
    with pytest.raises(SignInError):
        await client.identity(forged, "n-1")


async def test_the_charts_come_through_the_api_as_the_clinician(app: Any, issuer: Issuer):
    async with browser(app) as pages:
        await signed_in(pages, issuer, "psychiatrist-a")
        svg = await pages.get(f"/app/charts/patients/{PATIENT}")
        assert svg.status_code == 200 and svg.headers["content-type"] == "image/svg+xml"
        assert svg.content.lstrip().startswith(b"<?xml") and b"<svg" in svg.content
        assert svg.headers["content-security-policy"].startswith("default-src 'none'")
        assert svg.headers["x-content-type-options"] == "nosniff"
        png = await pages.get(f"/app/charts/patients/{PATIENT}?format=png")
        assert png.headers["content-type"] == "image/png" and png.content[:4] == b"\x89PNG"
        assert (await pages.get(f"/app/charts/patients/{PATIENT}?format=gif")).status_code == 400
    async with browser(app) as pages:
        await signed_in(pages, issuer, "psychiatrist-b")
        refused = await pages.get(f"/app/charts/patients/{PATIENT}")
        assert refused.status_code == 404 and b"<svg" not in refused.content
