"""`POST [base]/Appointment/{id}/$release-hold`: a psychiatrist releases a pre-dose hold.

The hold's DetectedIssue becomes final with a mitigation (the reason, the psychiatrist,
when); the session's psychiatrist participant is `accepted` again and the `dose-hold`
extension goes. The answer is the Appointment.
"""

from __future__ import annotations

from typing import Any

from services.scheduling.holds.issues import RELEASED, hold_url, open_hold, safety_system
from services.scheduling.holds.sessions import psychiatrist
from shared.auth.needs import check_letters
from shared.auth.principal import acting_person, current_principal
from shared.fhir.dates import format_instant, utcnow
from shared.fhir.errors import FHIRError, bad_request
from shared.fhir.operations import Operation, OperationCall, OperationParam, OperationResult

REASON = "Parameters.parameter.where(name='reason').valueString"


def _psychiatrist() -> str:
    """The Practitioner the token acts for; 403 for anyone else."""
    person = acting_person()
    if not person.startswith("Practitioner/"):
        raise FHIRError(403, "Only a Practitioner may release a dose hold", code="forbidden")
    return person


def _release(call: OperationCall) -> OperationResult:
    reason = str(call.one("reason", "")).strip()
    if not reason:
        raise bad_request("reason must say why the dose may be given", [REASON])
    person = _psychiatrist()
    # The hold's issue is updated too: the caller needs that scope as well.
    check_letters(current_principal.get(), "DetectedIssue", "u")
    interactions, session = call.interactions, call.session
    # 404 as a read answers; then locked, so two releases do not both pass.
    interactions.read(session, "Appointment", call.res_id or "")
    appointment = interactions.store.read(session, "Appointment", call.res_id or "", lock=True)
    current: dict[str, Any] = appointment.resource or {}
    issue = open_hold(interactions, session, current["id"])
    if issue is None:
        raise FHIRError(
            409,
            f"Pre-dose hold rule: Appointment/{current['id']} has no dose hold in force",
            code="conflict",
            expression=["Appointment"],
        )
    base = interactions.settings.canonical_base
    mitigation = {
        "action": {
            "coding": [{"system": safety_system(base), "code": RELEASED}],
            "text": f"Dose hold released: {reason}",
        },
        "date": format_instant(utcnow()),
        "author": {"reference": person},
    }
    mitigations = [*issue.get("mitigation", []), mitigation]
    released = {**issue, "status": "final", "mitigation": mitigations}
    version = int(issue["meta"]["versionId"])
    interactions.update(session, "DetectedIssue", issue["id"], released, if_match=version)
    participants = [dict(p) for p in current.get("participant") or []]
    index = psychiatrist(current)
    if index is not None:
        participants[index]["status"] = "accepted"
    body = {**current, "participant": participants}
    others = [e for e in current.get("extension") or [] if e.get("url") != hold_url(base)]
    body = {k: v for k, v in body.items() if k != "extension"}
    if others:
        body["extension"] = others
    version = int(current["meta"]["versionId"])
    stored = interactions.update(session, "Appointment", current["id"], body, if_match=version)
    assert stored.stored is not None
    return OperationResult(stored.stored.resource or {})


def release_hold_operation() -> Operation:
    """The `Appointment/[id]/$release-hold` operation of the scheduling service."""
    return Operation(
        name="release-hold",
        levels=frozenset({"instance"}),
        methods=frozenset({"POST"}),
        affects_state=True,
        handler=_release,
        description=(
            "A psychiatrist (the token's fhirUser, a Practitioner) releases the pre-dose "
            "blood pressure hold of a dosing session: the hold's DetectedIssue records the "
            "release as a mitigation and becomes final; the psychiatrist participant is "
            "accepted again."
        ),
        scope="system/Appointment.u",
        inputs=(OperationParam("reason", "string", min=1, documentation="Why, in words"),),
        outputs=(OperationParam("return", "Appointment", min=1, documentation="The session"),),
    )
