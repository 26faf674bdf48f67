"""The clinician pages against a real dev issuer: an outcomes app signed in through the issuer's
login form, and a small patient record in practice A."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx

from tests.factories import patient
from tests.issuer_support import AUDIENCES, Issuer, sign_in_at, token_from
from tests.measures_support import LOINC, score
from tests.outcomes_support import dosed, emdr
from tests.replicas import replicate
from tooling.dev_issuer import WEB_CLIENT, client_secret_file, web_redirect_uri
from tooling.dev_issuer.state import add_redirect_uri

PRACTICE_A, PRACTICE_B = "practice-a", "practice-b"
PATIENT = "pa1"
NAME = "Maria Jansen"
# PHQ-9 18 -> 12 -> 7 (-61 %: response, mild) and GAD-7 14 -> 6 (-57 %, mild).
SCORES = (
    ("44261-6", 18, "2026-01-10T10:00:00Z"),
    ("70274-6", 14, "2026-01-10T10:05:00Z"),
    ("44261-6", 12, "2026-02-01T10:00:00Z"),
    ("44261-6", 7, "2026-03-01T10:00:00Z"),
    ("70274-6", 6, "2026-03-01T10:05:00Z"),
)


def pages_settings(issuer: Issuer, base_url: str) -> dict[str, Any]:
    """Outcomes settings trusting the dev issuer and signing clinicians in there."""
    add_redirect_uri(issuer.directory, web_redirect_uri(base_url))
    return {
        "auth_issuer": issuer.url,
        "auth_jwks": "",
        "auth_audience": AUDIENCES[0],
        "web_client_id": WEB_CLIENT,
        "web_client_secret_file": str(client_secret_file(issuer.directory, WEB_CLIENT)),
        "web_base_url": base_url,
    }


# Two doses, each with its plasticity window, and an EMDR session a day after each.
COURSE = (
    ("d1", "2026-01-12T10:00:00Z", "e1", "2026-01-13T12:00:00Z", 26),
    ("d2", "2026-01-26T10:00:00Z", "e2", "2026-01-28T10:00:00Z", 48),
)


def _window(start: str) -> dict[str, str]:
    begins = datetime.fromisoformat(start)
    at = {"windowStart": 2, "optimalStart": 24, "optimalEnd": 72, "windowEnd": 168}
    return {name: (begins + timedelta(hours=h)).isoformat().replace("+00:00", "Z")
            for name, h in at.items()}  # fmt: skip


def seed_patients(app: Any) -> None:
    """Patients of practices A and B in the replica, as intake's events would put them, and
    practice A's patient's doses and EMDR sessions, as scheduling's would."""
    family, given = NAME.split()[1], NAME.split()[0]
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app))  # names the app only
    people = ((PATIENT, PRACTICE_A, family, given), ("pb1", PRACTICE_B, "Smit", "Joost"))
    for pid, org, *name in people:
        body = patient(*name, managingOrganization={"reference": f"Organization/{org}"})
        replicate(client, "Patient", pid, body)
    for dose_id, start, session_id, session_start, offset in COURSE:
        dosed(client, PATIENT, dose_id, start, window=_window(start))
        emdr(client, PATIENT, session_id, session_start, dose_id, offset, status="fulfilled")


def score_bodies() -> list[dict[str, Any]]:
    """Practice A's patient's scores, as Observations to POST."""
    return [
        score(code, value, system=LOINC, subject=PATIENT, effectiveDateTime=when)
        for code, value, when in SCORES
    ]


async def seed(app: Any, issuer: Issuer) -> None:
    """Patients of practices A and B, and practice A's patient's scores through the API."""
    seed_patients(app)
    headers = {"Authorization": f"Bearer {token_from(issuer, 'system/*.cruds')}"}
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://seed/fhir") as client:
        for body in score_bodies():
            response = await client.post("/Observation", json=body, headers=headers)
            assert response.status_code == 201, response.text


def follow_sign_in(
    pages: httpx.Client | httpx.AsyncClient, issuer: Issuer, login: httpx.Response, user: str
) -> str:
    """From the pages' redirect to the issuer, sign in at its form; the callback path."""
    assert login.status_code == 303, login.text[:300]
    back = sign_in_at(issuer.url, login.headers["location"], user)
    assert back.status_code == 303, back.text[:300]
    parts = urlsplit(back.headers["location"])
    return f"{parts.path}?{parts.query}"
