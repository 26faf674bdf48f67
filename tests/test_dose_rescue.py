"""Post-dose rescue thresholds (issue 10): a reading in the observation period after a
completed dose, beyond a threshold of the protocol file, raises a high-severity issue."""

from __future__ import annotations

from typing import Any

import httpx

from tests.dosing_support import BASE, SPRAVATO, dose
from tests.holds_support import blood_pressure, heart_rate, observe, ready

RESCUE_CODE = f"{BASE}/CodeSystem/dosing-safety|post-dose-rescue"
NASAL = {"medication": SPRAVATO, "route": "nasal", "mg": 56}  # ends 10:40 UTC


async def _rescues(client: httpx.AsyncClient) -> list[dict[str, Any]]:
    bundle = (await client.get("/DetectedIssue", params={"code": RESCUE_CODE})).json()
    return [entry["resource"] for entry in bundle.get("entry", [])]


async def _dosed(client: httpx.AsyncClient, patient_id: str) -> str:
    await ready(client, patient_id)
    given = await client.post("/MedicationAdministration", json=dose(patient_id, **NASAL))
    assert given.status_code == 201, given.text
    return given.json()["id"]


async def test_a_single_reading_over_the_single_threshold(scheduling: httpx.AsyncClient):
    dose_id = await _dosed(scheduling, "r1")
    observe(scheduling, "bp-1", blood_pressure("r1", 205, 100, "2026-03-02T11:00:00Z"))
    observe(scheduling, "bp-1", blood_pressure("r1", 205, 100, "2026-03-02T11:00:00Z"), 2)
    (issue,) = await _rescues(scheduling)  # the updated reading raises nothing new
    assert issue["severity"] == "high"
    assert [i["reference"] for i in issue["implicated"]] == [
        "Observation/bp-1",
        f"MedicationAdministration/{dose_id}",
    ]
    assert "for Practitioner/dr-1" in issue["detail"]
    assert "above 200/120 mmHg" in issue["detail"]


async def test_two_readings_at_the_repeated_threshold_five_minutes_apart(
    scheduling: httpx.AsyncClient,
):
    await _dosed(scheduling, "r2")
    observe(scheduling, "a", blood_pressure("r2", 182, 100, "2026-03-02T11:00:00Z"))
    observe(scheduling, "b", blood_pressure("r2", 150, 112, "2026-03-02T11:03:00Z"))
    assert await _rescues(scheduling) == []  # once, and then only 3 minutes apart
    observe(scheduling, "c", blood_pressure("r2", 185, 100, "2026-03-02T11:06:00Z"))
    (issue,) = await _rescues(scheduling)
    assert [i["reference"] for i in issue["implicated"][:2]] == ["Observation/a", "Observation/c"]
    assert "at or above 180/110 mmHg, 5 min apart" in issue["detail"]


async def test_a_heart_rate_held_above_the_threshold(scheduling: httpx.AsyncClient):
    await _dosed(scheduling, "r3")
    observe(scheduling, "h1", heart_rate("r3", 125, "2026-03-02T11:00:00Z"))
    observe(scheduling, "h2", heart_rate("r3", 110, "2026-03-02T11:02:00Z"))
    observe(scheduling, "h3", heart_rate("r3", 126, "2026-03-02T11:05:00Z"))
    assert await _rescues(scheduling) == []  # it came down in between
    observe(scheduling, "h4", heart_rate("r3", 130, "2026-03-02T11:07:00Z"))
    assert await _rescues(scheduling) == []  # high since 11:05 only
    observe(scheduling, "h5", heart_rate("r3", 124, "2026-03-02T11:10:00Z"))
    (issue,) = await _rescues(scheduling)
    assert [i["reference"] for i in issue["implicated"][:3]] == [
        "Observation/h3",
        "Observation/h4",
        "Observation/h5",
    ]
    assert "Heart rate above 120/min for 5 min" in issue["detail"]


async def test_outside_the_observation_period_nothing_is_raised(scheduling: httpx.AsyncClient):
    await _dosed(scheduling, "r4")
    observe(scheduling, "late", blood_pressure("r4", 210, 125, "2026-03-02T12:41:00Z"))
    assert await _rescues(scheduling) == []
