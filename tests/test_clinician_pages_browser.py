"""The clinician pages in a real headless Chromium (Debian's package, driven by Playwright with
`executable_path`; never `playwright install`): sign in through the dev issuer's form and see
the patient's name, latest scores, response figure and chart. Screenshots are kept in
test-artifacts/clinician-pages/."""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from services.outcomes.app import create_app
from tests.conftest import make_settings
from tests.issuer_support import Issuer, running_issuer, token_from
from tests.pages_support import NAME, PATIENT, pages_settings, score_bodies, seed_patients
from tooling.dev_issuer import DEV_PASSWORD
from tooling.ports import free_port
from tooling.service_process import ROOT

ARTIFACTS = ROOT / "test-artifacts" / "clinician-pages"


def chromium() -> str:
    """Debian's chromium; skipped without it on a workstation, a failure in CI."""
    found = shutil.which("chromium")
    reason = "Debian's chromium is not installed (apt-get install chromium)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        found, reason = None, "the playwright package is not installed"
    if found is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason}: CI must run the browser test (.ci/run installs chromium)")
        pytest.skip(reason)
    return found


class ThreadServer:
    """uvicorn serving an app on a free port in a thread (lifespan included)."""

    def __init__(self, app: Any, port: int) -> None:
        self.app, self.port = app, port
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> ThreadServer:
        self.thread.start()
        deadline = time.monotonic() + 60
        while not self.server.started:
            assert self.thread.is_alive() and time.monotonic() < deadline, "server did not start"
            time.sleep(0.05)
        return self

    def __exit__(self, *_: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


@pytest.fixture
def site(tmp_path: Path, database_url: str) -> Iterator[tuple[ThreadServer, Issuer]]:
    with running_issuer(tmp_path / "issuer") as issuer:
        port = free_port()
        settings = pages_settings(issuer, f"http://127.0.0.1:{port}") | {
            "port": port,
            "resync_on_start": False,
            "reconcile_interval_s": 0,
        }
        app = create_app(make_settings("outcomes", database_url, **settings))
        seed_patients(app)
        with ThreadServer(app, port) as server:
            headers = {"Authorization": f"Bearer {token_from(issuer, 'system/*.cruds')}"}
            for body in score_bodies():
                posted = httpx.post(f"{server.url}/fhir/Observation", json=body, headers=headers)
                assert posted.status_code == 201, posted.text
            yield server, issuer
        app.state.fhir.database.dispose()


def keep(shot: Path) -> None:
    """Copy a screenshot to the test artifacts (git-ignored), for CI to upload."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shutil.copy(shot, ARTIFACTS / shot.name)


def test_a_clinician_signs_in_in_chromium_and_sees_the_patient(
    site: tuple[ThreadServer, Issuer], tmp_path: Path
):
    executable = chromium()
    from playwright.sync_api import sync_playwright

    server, issuer = site
    registry = server.app.state.fhir.registry
    served = {op.name for op in registry.operations}
    for definition in registry.resources.values():
        served |= {op.name for op in definition.operations}
    # Where `Patient/$outcomes` is served, its trajectory chart must be on the page and drawn.
    has_chart = "outcomes" in served
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=executable, args=["--no-sandbox", "--headless=new"]
        )
        try:
            context = browser.new_context(viewport={"width": 1200, "height": 900})
            page = context.new_page()
            page.goto(f"{server.url}/app/patients/{PATIENT}")
            # Not signed in: the issuer's login form, listing the dev users.
            page.wait_for_url(f"{issuer.url}/authorize*")
            assert "Dr Anna de Vries" in page.inner_text("main")
            page.check('input[name="username"][value="psychiatrist-a"]')
            page.fill("#password", DEV_PASSWORD)
            page.click('button:has-text("Sign in")')
            page.wait_for_url(f"{server.url}/app/patients/{PATIENT}")

            assert page.inner_text("#patient-name") == NAME
            assert "Dr Anna de Vries" in page.inner_text("header")
            latest = page.inner_text('tr[data-measure="phq9-total"] td.latest')
            assert latest.startswith("7") and "1 Mar 2026" in latest
            assert page.inner_text('tr[data-measure="gad7-total"] td.latest').startswith("6")
            figure = page.inner_text("#response")
            assert "\u221261 %" in figure and "response" in figure
            course = page.inner_text("#course")
            assert "12 Jan 2026 10:00" in course and "26 h after the dose" in course
            if has_chart:
                page.wait_for_function("document.querySelector('#trajectory').complete")
                width = page.eval_on_selector("#trajectory", "img => img.naturalWidth")
                assert width > 0, "the trajectory chart did not load"
            page.reload()  # the page alone, without the sign-in's redirects
            page.wait_for_function(
                "performance.getEntriesByName('first-contentful-paint').length > 0"
            )
            paint = page.evaluate(
                "performance.getEntriesByName('first-contentful-paint')[0]?.startTime ?? null"
            )
            shot = tmp_path / "patient-page.png"
            page.screenshot(path=str(shot), full_page=True)
            keep(shot)

            cookies = {c["name"]: c for c in context.cookies()}
            session = cookies["kemdr_session"]
            assert session["httpOnly"] and session["secure"] and session["sameSite"] == "Lax"
            assert page.evaluate("document.cookie") == ""  # nothing readable by script

            page.goto(f"{server.url}/app/")
            assert NAME in page.inner_text("ul.patients")
            assert "Smit" not in page.inner_text("main")  # practice B's patient
            # The programme's charts, where the report and the evidence render them, drawn.
            page.wait_for_load_state("load")
            widths = page.eval_on_selector_all("main img", "imgs => imgs.map(i => i.naturalWidth)")
            assert all(width > 0 for width in widths), widths
            shot = tmp_path / "programme-page.png"
            page.screenshot(path=str(shot), full_page=True)
            keep(shot)

            page.click('button:has-text("Sign out")')
            assert "signed out" in page.inner_text("main")
            page.goto(f"{server.url}/app/")
            page.wait_for_url(f"{issuer.url}/authorize*")
        finally:
            browser.close()
    print(f"first contentful paint of the patient page: {paint} ms; operations {sorted(served)}")
