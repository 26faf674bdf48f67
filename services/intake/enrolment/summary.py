"""`GET|POST [base]/Patient/{id}/$enrolment`: where a patient stands in enrolment.

A patient without an open episode (never referred nor screened, or only finished
episodes) gets 200 with no `status`, `episode` or `ruleTableVersion`: not enrolled is an
answer, not an error. An unknown patient, or one of another practice, is a 404.
"""

from __future__ import annotations

from typing import Any

from services.intake.enrolment.consents import active_treatment_consent
from services.intake.screening.episode_status import current_episode, recorded_rule_table
from services.intake.screening.protocol import code_system_url
from services.intake.screening.rule import open_issues
from shared.auth.needs import check_letters
from shared.auth.principal import current_principal
from shared.fhir.operations import Operation, OperationCall, OperationParam, OperationResult

# What the answer is drawn from besides the Patient (the operation's scope covers that).
_SEARCHED = ("EpisodeOfCare", "DetectedIssue", "Consent")


def _reference(resource: dict[str, Any]) -> dict[str, Any]:
    return {"reference": f"{resource['resourceType']}/{resource['id']}"}


def _enrolment(call: OperationCall) -> OperationResult:
    who = current_principal.get()
    for res_type in _SEARCHED:
        check_letters(who, res_type, "s")
    interactions, session = call.interactions, call.session
    patient_id = call.res_id or ""
    # 404 for an unknown patient or one the caller may not see, 410 for a deleted one.
    interactions.read(session, "Patient", patient_id)
    base = interactions.settings.canonical_base
    parameters: list[dict[str, Any]] = []
    episode = current_episode(interactions, session, patient_id)
    if episode is not None:
        parameters.append({"name": "status", "valueCode": episode["status"]})
        parameters.append({"name": "episode", "valueReference": _reference(episode)})
    for issue in open_issues(interactions, session, patient_id, code_system_url(base)):
        parameters.append({"name": "reason", "valueReference": _reference(issue)})
    consent = active_treatment_consent(interactions, session, patient_id)
    if consent is not None:
        parameters.append({"name": "consent", "valueReference": _reference(consent)})
    version = recorded_rule_table(episode, base) if episode is not None else None
    if version is not None:
        parameters.append({"name": "ruleTableVersion", "valueString": version})
    body: dict[str, Any] = {"resourceType": "Parameters"}
    if parameters:  # FHIR JSON has no empty arrays
        body["parameter"] = parameters
    return OperationResult(body)


def enrolment_operation() -> Operation:
    """The `Patient/[id]/$enrolment` operation of the intake service (read-only)."""
    return Operation(
        name="enrolment",
        levels=frozenset({"instance"}),
        handler=_enrolment,
        description=(
            "The patient's enrolment: the open episode's status, the open screening issues "
            "behind it, the treatment Consent in force and the rule table that decided. No "
            "episode parameters when the patient has no open episode."
        ),
        # The Patient is read; the episode, issues and consents are searched (checked in
        # the handler, as one route declares one scope).
        scope="system/Patient.r",
        outputs=(
            OperationParam("status", "code", documentation="The open episode's status"),
            OperationParam("episode", "Reference", documentation="The open EpisodeOfCare"),
            OperationParam("reason", "Reference", max="*", documentation="Open DetectedIssues"),
            OperationParam("consent", "Reference", documentation="Treatment Consent in force"),
            OperationParam("ruleTableVersion", "string", documentation="Rule table version"),
        ),
    )
