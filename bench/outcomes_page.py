"""The clinician page's first contentful paint in Debian's Chromium (Playwright, never
`playwright install`), signed in through the dev issuer's form as the programme lead.

The baseline is the same browser's first paint of a static page of one heading from a local
server: the least any page costs to show here.
"""

from __future__ import annotations

import random
import shutil
import statistics
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from bench.outcomes_data import patient_id
from bench.servers import LOG_LEVEL
from tooling.ports import free_port
from tooling.service_process import HTTPProcess

PAINTS = 10
USER = "programme-lead"  # every practice: sees any patient of the benchmark's programme
_FCP = "performance.getEntriesByName('first-contentful-paint')[0]?.startTime ?? null"
# The entry can arrive just after the load event goto waits for.
_PAINTED = "performance.getEntriesByName('first-contentful-paint').length > 0"


@dataclass
class PageTiming:
    """First contentful paint of the page and of the baseline, in ms (None: not measured)."""

    what: str = ""
    ms: float | None = None
    runs: list[float] = field(default_factory=list)
    baseline_what: str = "a static one-heading page"
    baseline_ms: float | None = None
    note: str = ""


def first_paint(url: str, patients: int) -> PageTiming:
    """Median first paint of PAINTS patient pages for a signed-in clinician."""
    chromium = shutil.which("chromium")
    if chromium is None:
        return PageTiming(note="not measured: Debian's chromium is not installed")
    try:
        from playwright.sync_api import sync_playwright

        from tests.issuer_support import running_issuer
        from tests.pages_support import pages_settings
        from tooling.dev_issuer import DEV_PASSWORD
    except ImportError:
        return PageTiming(note="not measured: pages not merged")
    with tempfile.TemporaryDirectory() as folder, running_issuer(Path(folder)) as issuer:
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        settings = pages_settings(issuer, base)
        server = _pages_service(url, port, settings).start()
        try:
            with sync_playwright() as playwright, _static_page() as static:
                browser = playwright.chromium.launch(
                    executable_path=chromium, args=["--no-sandbox", "--headless=new"]
                )
                try:
                    return _paints(browser, base, static, patients, DEV_PASSWORD)
                finally:
                    browser.close()
        finally:
            server.stop()


def _pages_service(url: str, port: int, settings: dict[str, Any]) -> HTTPProcess:
    """The outcomes service trusting the dev issuer and serving the pages."""
    env = {
        "OUTCOMES_DATABASE_URL": url,
        "OUTCOMES_HOST": "127.0.0.1",
        "OUTCOMES_PORT": str(port),
        "OUTCOMES_MIGRATE_ON_START": "false",
        "OUTCOMES_LOG_LEVEL": LOG_LEVEL,
        "KAFKA_BOOTSTRAP_SERVERS": "",
        **{f"OUTCOMES_{key.upper()}": str(value) for key, value in settings.items()},
    }
    return HTTPProcess("outcomes-pages", ["-m", "services.outcomes", "serve"], env, port)


def _paints(browser: Any, base: str, static: str, patients: int, password: str) -> PageTiming:
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    page = context.new_page()
    first = f"{base}/app/patients/{patient_id(0)}"
    page.goto(first)
    page.wait_for_url("**/authorize*")
    page.check(f'input[name="username"][value="{USER}"]')
    page.fill("#password", password)
    page.click('button:has-text("Sign in")')
    page.wait_for_url(first)
    timing = PageTiming(what=f"`/app/patients/{{id}}`, median of {PAINTS} patients")
    rng = random.Random(7)
    for _ in range(PAINTS):
        page.goto(f"{base}/app/patients/{patient_id(rng.randrange(patients))}")
        page.wait_for_function(_PAINTED, timeout=30_000)
        paint = page.evaluate(_FCP)
        if paint is None:
            return PageTiming(note="not measured: Chromium reported no first-contentful-paint")
        timing.runs.append(float(paint))
    baseline = []
    for _ in range(PAINTS):
        page.goto(static)
        page.wait_for_function(_PAINTED, timeout=30_000)
        baseline.append(float(page.evaluate(_FCP)))
    timing.ms = statistics.median(timing.runs)
    timing.baseline_ms = statistics.median(baseline)
    context.close()
    return timing


class _Heading(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"<!doctype html><title>baseline</title><h1>Baseline</h1>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: object) -> None:
        return


@contextmanager
def _static_page() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Heading)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
