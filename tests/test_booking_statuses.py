"""Which statuses the booking rules check: every status a session takes place in passes the
dosing rules on entering it, checked-in holds time, FHIR app-3 (start and end), and an edit
that neither moves nor re-assigns a session is not checked again (review of issue 10)."""

from __future__ import annotations

from datetime import timedelta

import httpx
import pytest

from services.scheduling.booking.dosing import session_minutes
from services.scheduling.dosing.protocol import dosing_protocols
from services.scheduling.schedule_slots import instant
from shared.fhir.dates import format_instant
from tests.booking_support import at, rule_of, session, start_course
from tests.conftest import BACKENDS
from tests.factories import FHIR_JSON
from tests.scheduling_support import expressions, post

IV = dosing_protocols().get("iv-racemic")
assert IV is not None
NEXT_DAY = "2026-03-03"


def dosing(start: str, **extra: object) -> dict:
    """A dosing session exactly as long as the IV protocol asks, from `start`."""
    end = format_instant(instant(start) + timedelta(minutes=session_minutes(IV)))
    return session("dosing", start, end, **extra)  # type: ignore[arg-type]


async def _put(client: httpx.AsyncClient, body: dict) -> httpx.Response:
    return await client.put(f"/Appointment/{body['id']}", json=body, headers=FHIR_JSON)


@BACKENDS
@pytest.mark.parametrize("status", ["fulfilled", "checked-in", "arrived", "pending"])
async def test_a_session_written_in_any_status_it_takes_place_in_passes_the_dosing_rules(
    scheduling: httpx.AsyncClient, status
):
    await start_course(scheduling, "p1")
    assert (await post(scheduling, dosing(at(9)))).status_code == 201
    # 24 h later: the protocol asks 48 h between doses.
    refused = await post(scheduling, dosing(at(9, day=NEXT_DAY), status=status))
    assert refused.status_code == 409, refused.text
    assert "dosing-minimum-interval" in rule_of(refused)


async def test_checked_in_is_no_way_around_the_dosing_rules(scheduling: httpx.AsyncClient):
    # No EpisodeOfCare, no CarePlan, 30 minutes: every dosing rule refuses this as booked...
    booked = session("dosing", at(9), at(9, 30))
    assert (await post(scheduling, booked)).status_code == 409
    # ...and as checked-in.
    checked_in = await post(scheduling, booked | {"status": "checked-in"})
    assert checked_in.status_code == 409, checked_in.text
    assert "dosing-needs-active-enrolment" in rule_of(checked_in)


@pytest.mark.parametrize("before", ["proposed", "waitlist", "cancelled"])
async def test_a_session_moved_into_fulfilled_passes_the_dosing_rules(
    scheduling: httpx.AsyncClient, before
):
    await start_course(scheduling, "p1")
    assert (await post(scheduling, dosing(at(9)))).status_code == 201
    planned = await post(scheduling, dosing(at(9, day=NEXT_DAY), status=before))
    assert planned.status_code == 201, planned.text
    moved = await _put(scheduling, planned.json() | {"status": "fulfilled"})
    assert moved.status_code == 409, moved.text
    assert "dosing-minimum-interval" in rule_of(moved)


@pytest.mark.parametrize("status", ["booked", "pending", "arrived", "fulfilled", "noshow"])
async def test_only_proposed_cancelled_or_waitlist_may_lack_start_and_end(
    scheduling: httpx.AsyncClient, status
):
    # FHIR R4 app-3.
    body = session(None, at(9), at(10), status=status)
    for missing in ("start", "end"):
        refused = await post(scheduling, {k: v for k, v in body.items() if k != missing})
        assert refused.status_code == 422, refused.text
        assert expressions(refused) == ["Appointment.start", "Appointment.end"]


@pytest.mark.parametrize("status", ["proposed", "cancelled", "waitlist"])
async def test_a_proposal_cancellation_or_waitlist_entry_may_lack_times(
    scheduling: httpx.AsyncClient, status
):
    body = session("dosing", at(9), at(12), status=status)
    body.pop("start")
    body.pop("end")
    assert (await post(scheduling, body)).status_code == 201


async def test_a_booked_dosing_session_without_times_is_refused(scheduling: httpx.AsyncClient):
    await start_course(scheduling, "p1")
    body = dosing(at(9))
    body.pop("start")
    body.pop("end")
    refused = await post(scheduling, body)
    assert refused.status_code == 422, refused.text


@BACKENDS
async def test_a_checked_in_session_holds_its_participants_time(scheduling: httpx.AsyncClient):
    first = session(None, at(9), at(10), status="checked-in")
    assert (await post(scheduling, first)).status_code == 201
    clash = await post(scheduling, session(None, at(9, 30), at(10, 30), patient="Patient/p2"))
    assert clash.status_code == 409, clash.text
    assert "no-double-booking" in rule_of(clash) and "Practitioner/dr-1" in rule_of(clash)


async def _completed_course_with_an_arrived_session(client: httpx.AsyncClient) -> dict:
    plan_id = await start_course(client, "p1")
    created = await post(client, dosing(at(9)))
    assert created.status_code == 201, created.text
    arrived = await _put(client, created.json() | {"status": "arrived"})
    assert arrived.status_code == 200, arrived.text
    # The last dose given, the clinician completes the course plan.
    plan = (await client.get(f"/CarePlan/{plan_id}")).json()
    done = await client.put(
        f"/CarePlan/{plan_id}", json=plan | {"status": "completed"}, headers=FHIR_JSON
    )
    assert done.status_code == 200, done.text
    return arrived.json()


async def test_an_arrived_session_can_be_edited_after_its_course_plan_is_completed(
    scheduling: httpx.AsyncClient,
):
    arrived = await _completed_course_with_an_arrived_session(scheduling)
    noted = await _put(scheduling, arrived | {"comment": "patient drowsy"})
    assert noted.status_code == 200, noted.text
    # Post-dose observation extended by half an hour: the session's own record.
    longer = await _put(scheduling, noted.json() | {"end": at(12, 30)})
    assert longer.status_code == 200, longer.text
    done = await _put(scheduling, longer.json() | {"status": "fulfilled"})
    assert done.status_code == 200, done.text


@pytest.mark.parametrize(
    "change",
    [
        {"start": at(8, 30)},  # moved
        {"end": at(10)},  # shortened
        {"participant": [{"actor": {"reference": "Patient/p2"}, "status": "accepted"}]},
    ],
)
async def test_moving_shortening_or_reassigning_a_session_checks_it_again(
    scheduling: httpx.AsyncClient, change
):
    arrived = await _completed_course_with_an_arrived_session(scheduling)
    changed = await _put(scheduling, arrived | change)
    assert changed.status_code in (409, 422), changed.text
    assert "CarePlan" in rule_of(changed) or "enrolment" in rule_of(changed)
