"""`POST [base]/Appointment/$find`: proposed sessions in the patient's plasticity window,
the optimal part first (Argonaut/IHE scheduling's find-then-hold-then-book)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from services.scheduling.finding.busy import busy_times
from services.scheduling.finding.inputs import patient_of, period, service_type
from services.scheduling.finding.proposals import Search, collect
from services.scheduling.finding.schedules import calendars
from services.scheduling.finding.windows import current_window
from shared.fhir.dates import utcnow
from shared.fhir.operations import Operation, OperationCall, OperationParam, OperationResult

DEFAULT_COUNT, MAX_COUNT = 20, 100


def _ranges(search: Search, since: datetime, until: datetime) -> list[tuple[datetime, datetime]]:
    """The optimal part of [since, until) first, then the rest, earliest first."""
    dose = search.dose
    if dose is None:
        return [(since, until)]
    optimal = (max(since, dose.optimal_start), min(until, dose.optimal_end))
    before = (since, min(until, dose.optimal_start))
    after = (max(since, dose.optimal_end), until)
    return [r for r in (optimal, before, after) if r[0] < r[1]]


def _referrals(call: OperationCall, patient: str) -> list[dict[str, Any]]:
    """The referrals (ServiceRequest) of the patient's active EpisodeOfCare, as intake's
    replica names them: what the proposed sessions are based on."""
    pairs = [("patient", patient), ("status", "active"), ("_count", "10")]
    found = call.interactions.search(call.session, "EpisodeOfCare", pairs, strict=True)
    return [
        {"reference": ref["reference"]}
        for episode in found.resources
        for ref in episode.get("referralRequest") or []
        if isinstance(ref, dict) and isinstance(ref.get("reference"), str)
    ]


def _find(call: OperationCall) -> OperationResult:
    interactions, session = call.interactions, call.session
    patient = patient_of(call)
    code, concept = service_type(call)
    count = min(int(call.one("_count", DEFAULT_COUNT)), MAX_COUNT)
    now = utcnow()
    dose = current_window(interactions, session, patient, now)
    since, until = period(call, dose, patient)
    # Nothing in the past is proposed.
    since = max(since, now)
    people, rooms = calendars(interactions, session, code)
    wanted = call.one("practitioner")
    if wanted is not None:
        people = [c for c in people if c.actor == (wanted.get("reference") or "")]
    search = Search(patient, concept, people, rooms, {}, dose, max(count, 0), [])
    search.based_on = _referrals(call, patient)
    if people and since < until:
        actors = [patient, *{c.actor for c in people}, *{c.actor for c in rooms}]
        search.busy = busy_times(interactions, session, actors, since, until, now)
        for low, high in _ranges(search, since, until):
            collect(interactions, session, search, low, high)
    entries = [
        {"fullUrl": f"urn:uuid:{uuid.uuid4()}", "resource": a, "search": {"mode": "match"}}
        for a in search.found
    ]
    bundle: dict[str, Any] = {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": len(entries),
        "entry": entries,
    }
    if not entries:
        bundle.pop("entry")
    return OperationResult(bundle)


def find_operation() -> Operation:
    """The type-level `$find` on Appointment (a search: it writes nothing)."""
    return Operation(
        name="find",
        levels=frozenset({"type"}),
        methods=frozenset({"POST"}),
        handler=_find,
        description=(
            "Proposed Appointments (status proposed) for a patient and session type, from the "
            "free Slots of practitioners whose Schedule offers that service type (and of a "
            "room, when rooms keep such Schedules), in the patient's current plasticity "
            "window unless start/end are given: the optimal part first, then the rest; none "
            "running past the window's end. 404 for a patient the caller may not read; 422 "
            "for dosing sessions, which are booked directly under the protocol's rules. It "
            "writes nothing: a slot held only by a lapsed hold is offered again once the hold "
            "sweeper has cancelled that hold (within SCHEDULING_HOLD_SWEEP_INTERVAL_S)."
        ),
        scope="system/Appointment.r",
        inputs=(
            OperationParam("patient", "Reference", min=1, documentation="Who the session is for"),
            OperationParam("service-type", "CodeableConcept", min=1, documentation="Session type"),
            OperationParam("start", "dateTime", documentation="From (default: window start)"),
            OperationParam("end", "dateTime", documentation="Until (default: window end)"),
            OperationParam("practitioner", "Reference", documentation="Only this practitioner"),
            OperationParam("_count", "integer", documentation=f"At most (<= {MAX_COUNT})"),
        ),
        outputs=(OperationParam("return", "Bundle", min=1, documentation="A searchset"),),
    )
