"""The clinician page's first contentful paint in Debian's Chromium (Playwright)."""

from __future__ import annotations

from dataclasses import dataclass

import httpx

from tooling.service_process import HTTPProcess


@dataclass
class PageTiming:
    """First contentful paint of the page and of the baseline, in ms (None: not measured)."""

    what: str = ""
    ms: float | None = None
    baseline_what: str = ""
    baseline_ms: float | None = None
    note: str = ""


def first_paint(server: HTTPProcess, patient: str) -> PageTiming:
    """The patient page's first paint for a signed-in clinician."""
    if httpx.get(f"{server.url}/app", timeout=30).status_code == 404:
        return PageTiming(note="not measured: pages not merged")
    return PageTiming(note=f"not measured yet for Patient/{patient}")
