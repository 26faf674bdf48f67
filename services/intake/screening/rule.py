"""The QuestionnaireResponse write rule: check the response, then record what screening
found (DetectedIssues, the EpisodeOfCare status) in the writer's transaction."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

from services.intake.enrolment.consents import active_treatment_consent, lock_enrolment
from services.intake.enrolment.decision import status_after_rescreening
from services.intake.screening.episode_status import set_episode_status
from services.intake.screening.evaluation import (
    EVALUATED,
    Evaluation,
    answers,
    evaluate,
    validate,
)
from services.intake.screening.protocol import code_system_url, rule_table, screening_url
from services.intake.screening.publish import publish_screening
from shared.fhir.dates import format_instant, utcnow
from shared.fhir.errors import FHIRError, invalid

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from shared.fhir.interactions import Interactions
    from shared.fhir.rules import WriteContext

# DetectedIssue states that still stand; a re-evaluation cancels them.
_OPEN = "preliminary,final,amended"
_SEVERITY = {"absolute": "high", "relative": "moderate"}


def _questionnaire(context: WriteContext, canonical: Any) -> dict[str, Any]:
    """The Questionnaire a response answers (`url|version`); 422 when unknown."""
    where = ["QuestionnaireResponse.questionnaire"]
    if not isinstance(canonical, str) or "|" not in canonical:
        raise invalid("A response must name its Questionnaire as url|version", where)
    url, version = canonical.split("|", 1)
    interactions, session = context.interactions, context.session
    pairs = [("url", url), ("version", version)]
    found = interactions.search(session, "Questionnaire", pairs, strict=True).resources
    if not found and url == screening_url(interactions.settings.canonical_base):
        publish_screening(interactions, session)  # first use before the start-up publication ran
        found = interactions.search(session, "Questionnaire", pairs, strict=True).resources
    if not found:
        raise invalid(f"Unknown Questionnaire {canonical}", where)
    return found[0]


def _patient_id(context: WriteContext, subject: Any) -> str:
    """The id of the response's subject, which must be a Patient stored here; 422 if not."""
    where = ["QuestionnaireResponse.subject"]
    reference = subject.get("reference", "") if isinstance(subject, dict) else ""
    parts = reference.rstrip("/").split("/")
    if len(parts) < 2 or parts[-2] != "Patient":
        raise invalid("A screening response's subject must be a Patient", where)
    with contextlib.suppress(FHIRError):
        context.interactions.store.read(context.session, "Patient", parts[-1])
        return parts[-1]
    raise invalid(f"Unknown patient {reference}", where)


def has_active_treatment_consent(
    interactions: Interactions, session: Session, patient_id: str
) -> bool:
    """Whether a treatment Consent is in force (active, in its period, no refusal)."""
    return active_treatment_consent(interactions, session, patient_id) is not None


def open_issues(
    interactions: Interactions, session: Session, patient_id: str, system: str
) -> list[dict[str, Any]]:
    """The patient's open DetectedIssues coded in `system` (at most one per rule stands)."""
    pairs = [
        ("patient", f"Patient/{patient_id}"),
        ("code", f"{system}|"),
        ("status", _OPEN),
        ("_count", "1000"),
    ]
    return interactions.search(session, "DetectedIssue", pairs, strict=True).resources


def withdraw_issues(
    interactions: Interactions, session: Session, query: list[tuple[str, str]], status: str
) -> None:
    """Mark the open DetectedIssues matching `query` as `status` (kept, not deleted, so
    what screening once said stays readable in history)."""
    pairs = [*query, ("status", _OPEN), ("_count", "200")]
    while True:
        found = interactions.search(session, "DetectedIssue", pairs, strict=True).resources
        if not found:
            return
        for issue in found:
            interactions.update(
                session,
                "DetectedIssue",
                issue["id"],
                {**issue, "status": status},
                if_match=int(issue["meta"]["versionId"]),
            )


def record(
    interactions: Interactions,
    session: Session,
    patient_id: str,
    response_id: str,
    evaluation: Evaluation,
) -> None:
    """Replace the patient's open screening issues with these findings and move the episode;
    a psychiatrist's review of a finding that stands is carried to its new issue."""
    table = rule_table()
    system = code_system_url(interactions.settings.canonical_base)
    reviews = _reviews(open_issues(interactions, session, patient_id, system), system)
    query = [("patient", f"Patient/{patient_id}"), ("code", f"{system}|")]
    withdraw_issues(interactions, session, query, "cancelled")
    now = format_instant(utcnow())
    for finding in evaluation.findings:
        rule = finding.rule
        coding = {"system": system, "version": table.version, "code": rule.key}
        snomed = [{"system": "http://snomed.info/sct", **code} for code in rule.snomed]
        issue = {
            "resourceType": "DetectedIssue",
            "status": "final",
            "code": {"coding": [{**coding, "display": rule.display}, *snomed]},
            "severity": _SEVERITY[rule.kind],
            "patient": {"reference": f"Patient/{patient_id}"},
            "identifiedDateTime": now,
            "implicated": [{"reference": f"QuestionnaireResponse/{response_id}"}],
            "detail": f"{finding.detail} ({rule.kind} contraindication; source: {rule.source})",
        }
        if rule.key in reviews:
            issue["mitigation"] = reviews[rule.key][1]
        interactions.create(session, "DetectedIssue", issue)
    found = {finding.rule.key for finding in evaluation.findings}
    decisions = {key: decision for key, (decision, _) in reviews.items()}
    consent = has_active_treatment_consent(interactions, session, patient_id)
    status = status_after_rescreening(evaluation.episode_status, found, decisions, consent)
    set_episode_status(interactions, session, patient_id, status, table.version)


def _reviews(
    issues: list[dict[str, Any]], system: str
) -> dict[str, tuple[str, list[dict[str, Any]]]]:
    """Rule key -> (the latest review decision, the mitigations) of each reviewed open issue."""
    reviewed: dict[str, tuple[str, list[dict[str, Any]]]] = {}
    for issue in issues:
        mitigations = issue.get("mitigation") or []
        codes = [c for c in issue["code"]["coding"] if c.get("system") == system]
        decisions = [
            coding.get("code")
            for m in mitigations
            for coding in (m.get("action") or {}).get("coding", [])
            if coding.get("code") in ("eligible", "excluded")
        ]
        if codes and decisions:
            reviewed[codes[0]["code"]] = (decisions[-1], mitigations)
    return reviewed


def screening_rule(context: WriteContext) -> None:
    """Write rule on QuestionnaireResponse: 422 on an unknown questionnaire or patient, a
    missing required answer or an implausible one; a completed screening is evaluated."""
    interactions, session = context.interactions, context.session
    if context.resource is None:
        # A deleted response no longer supports what it found.
        reference = f"QuestionnaireResponse/{context.res_id}"
        withdraw_issues(interactions, session, [("implicated", reference)], "entered-in-error")
        return
    response = context.resource
    questionnaire = _questionnaire(context, response.get("questionnaire"))
    patient_id = _patient_id(context, response.get("subject"))
    validate(response, questionnaire)
    if questionnaire.get("url") != screening_url(interactions.settings.canonical_base):
        return
    status = response.get("status")
    if status == "entered-in-error":
        reference = f"QuestionnaireResponse/{context.res_id}"
        withdraw_issues(interactions, session, [("implicated", reference)], "entered-in-error")
        return
    if status not in EVALUATED:
        return
    previous = context.previous.resource if context.previous is not None else None
    if (
        previous is not None
        and previous.get("status") in EVALUATED
        and previous.get("subject") == response.get("subject")
        and answers(previous) == answers(response)
    ):
        return  # the same answers again (a retry, completed -> amended): nothing new found
    lock_enrolment(interactions, session, patient_id)
    consent = has_active_treatment_consent(interactions, session, patient_id)
    evaluation = evaluate(response, rule_table(), consent_active=consent)
    assert context.res_id is not None  # creates get their id before the rules run
    record(interactions, session, patient_id, context.res_id, evaluation)
