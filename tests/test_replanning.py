"""A dose that falls through, or its dosing session called off, re-proposes the EMDR
sessions booked in its window, in the same transaction (each an Appointment event)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from services.scheduling.replanning.sessions import replanned_url
from tests.conftest import BACKENDS
from tests.dosing_support import BASE, clinician, dose
from tests.holds_support import ready
from tests.outbox_rows import events_of
from tests.replanning_support import PAST, created, in_window, put, session

REPLANNED = replanned_url(BASE)


def _flag(appointment: dict[str, Any]) -> dict[str, Any]:
    (found,) = [e for e in appointment.get("extension", []) if e["url"] == REPLANNED]
    return {
        sub["url"]: sub.get("valueString", sub.get("valueReference")) for sub in found["extension"]
    }


async def _read(client: httpx.AsyncClient, appointment: dict[str, Any]) -> dict[str, Any]:
    response = await client.get(f"/Appointment/{appointment['id']}", headers=clinician())
    assert response.status_code == 200, response.text
    return response.json()


@BACKENDS
@pytest.mark.parametrize("fallen", ["entered-in-error", "not-done"])
async def test_a_dose_no_longer_given_re_proposes_the_emdr_sessions_it_opened(
    scheduling: httpx.AsyncClient, fallen: str
):
    await ready(scheduling, "p1")  # a weight, the course and the booked dosing session
    given = await created(scheduling, dose("p1"), headers=clinician())
    other = await created(scheduling, dose("p1"), headers=clinician())
    opened = f"MedicationAdministration/{given['id']}"
    booked = await created(
        scheduling, session("p1", "emdr", dose=opened, start=in_window(3)), headers=clinician()
    )
    pending = await created(
        scheduling,
        session("p1", "emdr", dose=opened, start=in_window(4), status="pending"),
        headers=clinician(),
    )
    done = await created(
        scheduling,
        session("p1", "emdr", dose=opened, start=PAST, status="fulfilled"),
        headers=clinician(),
    )
    elsewhere = await created(
        scheduling,
        session("p1", "emdr", dose=f"MedicationAdministration/{other['id']}", start=in_window(5)),
        headers=clinician(),
    )
    before = len(events_of(scheduling, "Appointment"))

    await put(scheduling, {**given, "status": fallen}, headers=clinician())
    for replanned in (booked, pending):
        now = await _read(scheduling, replanned)
        assert now["status"] == "proposed"
        assert _flag(now)["cause"] == {"reference": opened}
        assert fallen in _flag(now)["reason"]
    for untouched in (done, elsewhere):
        assert (await _read(scheduling, untouched))["meta"]["versionId"] == "1"
    # "It says so in an event": each re-proposed session's own update event.
    new = events_of(scheduling, "Appointment")[before:]
    assert sorted(e["subject"] for e in new) == sorted(
        f"Appointment/{a['id']}" for a in (booked, pending)
    )
    assert all(e["data"]["status"] == "proposed" for e in new)

    # Written again (still not given): nothing more to re-propose.
    current = (await scheduling.get(f"/MedicationAdministration/{given['id']}")).json()
    await put(scheduling, {**current, "note": [{"text": "recorded twice"}]}, headers=clinician())
    assert len(events_of(scheduling, "Appointment")) == before + 2


async def test_a_deleted_dose_re_proposes_its_emdr_sessions(scheduling: httpx.AsyncClient):
    await ready(scheduling, "p1")  # a weight, the course and the booked dosing session
    given = await created(scheduling, dose("p1"), headers=clinician())
    opened = f"MedicationAdministration/{given['id']}"
    booked = await created(
        scheduling, session("p1", "emdr", dose=opened, start=in_window(3)), headers=clinician()
    )
    deleted = await scheduling.delete(f"/{opened}", headers=clinician())
    assert deleted.status_code in (200, 204), deleted.text
    assert (await _read(scheduling, booked))["status"] == "proposed"


@BACKENDS
async def test_a_cancelled_dosing_session_re_proposes_the_emdr_sessions_of_its_dose(
    scheduling: httpx.AsyncClient,
):
    await ready(scheduling, "p1")  # a weight, the course and the booked dosing session
    # Two more dosing sessions of the course, 48 h or more apart.
    dosing = await created(scheduling, session("p1", "dosing", start=in_window(5)))
    other_dosing = await created(scheduling, session("p1", "dosing", start=in_window(7)))
    linked = {"supportingInformation": [{"reference": f"Appointment/{dosing['id']}"}]}
    given = await created(scheduling, {**dose("p1"), **linked}, headers=clinician())
    unlinked = await created(scheduling, dose("p1"), headers=clinician())
    mine = await created(
        scheduling,
        session("p1", "emdr", dose=f"MedicationAdministration/{given['id']}", start=in_window(3)),
        headers=clinician(),
    )
    not_mine = await created(
        scheduling,
        session(
            "p1", "emdr", dose=f"MedicationAdministration/{unlinked['id']}", start=in_window(4)
        ),
        headers=clinician(),
    )
    await put(scheduling, {**other_dosing, "status": "cancelled"}, headers=clinician())
    assert (await _read(scheduling, mine))["status"] == "booked"

    await put(scheduling, {**dosing, "status": "cancelled"}, headers=clinician())
    now = await _read(scheduling, mine)
    assert now["status"] == "proposed"
    assert _flag(now)["cause"] == {"reference": f"Appointment/{dosing['id']}"}
    assert "cancelled" in _flag(now)["reason"]
    assert (await _read(scheduling, not_mine))["status"] == "booked"
    # The dose itself is left as recorded.
    kept = (await scheduling.get(f"/MedicationAdministration/{given['id']}")).json()
    assert kept["meta"]["versionId"] == "1"


async def test_a_refused_dose_change_re_proposes_nothing(scheduling: httpx.AsyncClient):
    await ready(scheduling, "p1")  # a weight, the course and the booked dosing session
    given = await created(scheduling, dose("p1"), headers=clinician())
    opened = f"MedicationAdministration/{given['id']}"
    booked = await created(
        scheduling, session("p1", "emdr", dose=opened, start=in_window(3)), headers=clinician()
    )
    stale = await scheduling.put(
        f"/{opened}",
        json={**given, "status": "not-done"},
        headers={**clinician(), "If-Match": 'W/"9"'},
    )
    assert stale.status_code == 412, stale.text
    assert stale.json()["resourceType"] == "OperationOutcome"
    assert (await _read(scheduling, booked))["status"] == "booked"
