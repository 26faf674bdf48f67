"""`POST [base]/EpisodeOfCare/{id}/$review`: a psychiatrist decides on an onhold episode.

eligible -> active with a treatment Consent in force, else waitlist; excluded -> cancelled.
Every open screening DetectedIssue of the patient gets a `mitigation` naming the decision,
its reason and the reviewer; the issues stay open and readable.
"""

from __future__ import annotations

from typing import Any

from services.intake.enrolment.consents import active_treatment_consent, lock_enrolment
from services.intake.enrolment.known_patient import patient_id_of
from services.intake.screening.episode_status import move_episode, recorded_rule_table
from services.intake.screening.protocol import code_system_url
from services.intake.screening.rule import open_issues
from shared.auth.needs import check_letters
from shared.auth.principal import acting_person, current_principal
from shared.fhir.dates import format_instant, utcnow
from shared.fhir.errors import FHIRError, bad_request
from shared.fhir.operations import Operation, OperationCall, OperationParam, OperationResult

DECISIONS = ("eligible", "excluded")


def review_system(canonical_base: str) -> str:
    """The programme CodeSystem of review decisions (the mitigation action's coding)."""
    return f"{canonical_base}/CodeSystem/screening-review"


def _inputs(call: OperationCall) -> tuple[str, str]:
    decision, reason = call.one("decision"), call.one("reason").strip()
    if decision not in DECISIONS:
        raise bad_request(
            f"decision must be {' or '.join(DECISIONS)}",
            ["Parameters.parameter.where(name='decision').valueCode"],
        )
    if not reason:
        raise bad_request(
            "reason must say why", ["Parameters.parameter.where(name='reason').valueString"]
        )
    return decision, reason


def _reviewer() -> str:
    """The Practitioner the token acts for; 403 for anyone else."""
    person = acting_person()
    if not person.startswith("Practitioner/"):
        raise FHIRError(403, "Only a Practitioner may review an episode", code="forbidden")
    return person


def _mitigate(call: OperationCall, patient_id: str, action: dict[str, Any], author: str) -> None:
    """Add the review as a mitigation to each open screening issue of the patient."""
    system = code_system_url(call.interactions.settings.canonical_base)
    entry = {"action": action, "date": format_instant(utcnow()), "author": {"reference": author}}
    for issue in open_issues(call.interactions, call.session, patient_id, system):
        changed = {**issue, "mitigation": [*issue.get("mitigation", []), entry]}
        version = int(issue["meta"]["versionId"])
        call.interactions.update(
            call.session, "DetectedIssue", issue["id"], changed, if_match=version
        )


def _onhold_episode(call: OperationCall) -> tuple[dict[str, Any], str]:
    """The episode under review and its patient id; 409 unless it is onhold."""
    interactions, session = call.interactions, call.session
    # 404 for an unknown episode or one of another practice's patient, as a read answers.
    stored = interactions.read(session, "EpisodeOfCare", call.res_id or "").stored
    assert stored is not None and stored.resource is not None
    patient_id = patient_id_of(stored.resource.get("patient")) or ""
    lock_enrolment(interactions, session, patient_id)
    # Read again under the lock: a review or consent change just committed is seen.
    episode = interactions.store.read(session, "EpisodeOfCare", stored.id).resource
    assert episode is not None
    if episode["status"] != "onhold":
        raise FHIRError(
            409,
            f"EpisodeOfCare/{episode['id']} is '{episode['status']}'; only an 'onhold' "
            "episode awaits review",
            code="conflict",
            expression=["EpisodeOfCare.status"],
        )
    return episode, patient_id


def _review(call: OperationCall) -> OperationResult:
    decision, reason = _inputs(call)
    reviewer = _reviewer()
    # The issues are updated too: the caller needs that scope as well.
    check_letters(current_principal.get(), "DetectedIssue", "u")
    episode, patient_id = _onhold_episode(call)
    interactions, session = call.interactions, call.session
    if decision == "excluded":
        status = "cancelled"
    else:
        consent = active_treatment_consent(interactions, session, patient_id)
        status = "active" if consent is not None else "waitlist"
    base = interactions.settings.canonical_base
    text = f"Psychiatric review: {decision}. {reason}"
    action = {"coding": [{"system": review_system(base), "code": decision}], "text": text}
    _mitigate(call, patient_id, action, reviewer)
    version = recorded_rule_table(episode, base)
    moved = move_episode(interactions, session, episode, status, version, f"{text} ({reviewer})")
    return OperationResult(moved)


def review_operation() -> Operation:
    """The `EpisodeOfCare/[id]/$review` operation of the intake service."""
    return Operation(
        name="review",
        levels=frozenset({"instance"}),
        methods=frozenset({"POST"}),
        affects_state=True,
        handler=_review,
        description=(
            "A psychiatrist's review of an onhold episode (the token's fhirUser, a "
            "Practitioner): eligible makes it active (treatment consent in force) or "
            "waitlist; excluded cancels it. The patient's open screening DetectedIssues "
            "record the review as a mitigation."
        ),
        # It updates the episode and the issues (the latter checked in the handler).
        scope="system/EpisodeOfCare.u",
        inputs=(
            OperationParam("decision", "code", min=1, documentation="eligible | excluded"),
            OperationParam("reason", "string", min=1, documentation="Why, in words"),
        ),
        outputs=(OperationParam("return", "EpisodeOfCare", min=1, documentation="The episode"),),
    )
