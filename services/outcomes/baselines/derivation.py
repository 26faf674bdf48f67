"""The baseline totals of a screening response as Observations, kept in step with the response:
written, amended, or marked entered-in-error when the response no longer gives them."""

from __future__ import annotations

import contextlib
import logging
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from services.outcomes.baselines.instruments import (
    PRORATED,
    Instrument,
    method_system,
    scoring,
)
from services.outcomes.baselines.scoring import Total, total
from services.outcomes.observations.measures import outcome_measures
from shared.fhir.dates import format_instant
from shared.fhir.errors import FHIRError
from shared.fhir.references import parse_reference

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from shared.fhir.interactions import Interactions
    from shared.fhir.store import Stored

log = logging.getLogger(__name__)

# Response states whose answers stand; any other state derives nothing new.
DERIVING = ("completed", "amended")
WITHDRAWN = "entered-in-error"
# A total whose value did not change keeps its status; a changed one is amended.
STANDING = ("final", "amended")
SURVEY = {
    "coding": [
        {
            "system": "http://terminology.hl7.org/CodeSystem/observation-category",
            "code": "survey",
            "display": "Survey",
        }
    ]
}


def identifier_system(canonical_base: str) -> str:
    """The system of the identifier that ties a derived total to its response."""
    return f"{canonical_base.rstrip('/')}/identifier/derived-score"


def _identifier(interactions: Interactions, response_id: str, key: str) -> dict[str, str]:
    system = identifier_system(interactions.settings.canonical_base)
    return {"system": system, "value": f"QuestionnaireResponse/{response_id}/{key}"}


def _current(
    session: Session, interactions: Interactions, res_type: str, res_id: str
) -> Stored | None:
    """The current version here (None when never stored or deleted)."""
    with contextlib.suppress(FHIRError):
        return interactions.store.read(session, res_type, res_id)
    return None


def _derived(
    session: Session, interactions: Interactions, response_id: str, key: str
) -> dict[str, Any] | None:
    identifier = _identifier(interactions, response_id, key)
    pairs = [("identifier", f"{identifier['system']}|{identifier['value']}")]
    found = interactions.search(session, "Observation", pairs, strict=True).resources
    return found[0] if found else None


def _questionnaire(
    session: Session, interactions: Interactions, canonical: Any
) -> dict[str, Any] | None:
    """The replicated Questionnaire version a response names as `url|version`."""
    if not isinstance(canonical, str) or "|" not in canonical:
        return None
    url, version = canonical.split("|", 1)
    pairs = [("url", url), ("version", version)]
    found = interactions.search(session, "Questionnaire", pairs, strict=True).resources
    return found[0] if found else None


def _method(found: Total, canonical_base: str) -> dict[str, Any]:
    instrument = found.instrument
    concept = scoring().methods["concepts"][found.method]
    name = outcome_measures().measures[instrument.key].display
    if found.method == PRORATED:
        text = (
            f"{name}: {found.answered} of {instrument.items} items answered; their mean score "
            f"x {instrument.items}, rounded half up"
        )
    else:
        text = f"{name}: sum of the {instrument.items} item scores"
    coding = {"system": method_system(canonical_base), "code": found.method}
    return {"coding": [{**coding, "display": concept["display"]}], "text": text}


def _observation(
    interactions: Interactions, response: Stored, patient_id: str, found: Total, status: str
) -> dict[str, Any]:
    content = response.resource or {}
    measure = outcome_measures().measures[found.instrument.key]
    system, code = measure.codes[0]
    base = interactions.settings.canonical_base
    # When the response says when it was answered; else when intake recorded it.
    effective = content.get("authored") or format_instant(response.last_updated)
    return {
        "resourceType": "Observation",
        "identifier": [_identifier(interactions, response.id, found.instrument.key)],
        "status": status,
        "category": [SURVEY],
        "code": {"coding": [{"system": system, "code": code, "display": measure.display}]},
        "subject": {"reference": f"Patient/{patient_id}"},
        "effectiveDateTime": effective,
        "valueInteger": found.value,
        "method": _method(found, base),
        "derivedFrom": [
            {"reference": f"QuestionnaireResponse/{response.id}/_history/{response.version_id}"}
        ],
    }


def _same(stored: dict[str, Any], body: dict[str, Any]) -> bool:
    return {k: v for k, v in stored.items() if k not in ("id", "meta")} == body


def _record(
    session: Session, interactions: Interactions, response: Stored, patient_id: str, found: Total
) -> None:
    """Create the total's Observation, or bring it up to date (unchanged: no new version)."""
    existing = _derived(session, interactions, response.id, found.instrument.key)
    if existing is None:
        body = _observation(interactions, response, patient_id, found, "final")
        identifier = body["identifier"][0]
        # Conditional: two deliveries racing on other workers still make one Observation.
        condition = urlencode({"identifier": f"{identifier['system']}|{identifier['value']}"})
        interactions.create(session, "Observation", body, if_none_exist=condition)
        return
    kept = existing.get("valueInteger") == found.value and existing.get("status") in STANDING
    status = existing["status"] if kept else "amended"
    body = _observation(interactions, response, patient_id, found, status)
    if _same(existing, body):
        return  # a redelivered or repeated event
    body["id"] = existing["id"]
    version = int(existing["meta"]["versionId"])
    interactions.update(session, "Observation", existing["id"], body, if_match=version)


def _withdraw(session: Session, interactions: Interactions, response_id: str, key: str) -> None:
    """A total the response no longer gives stays on record, marked entered-in-error."""
    existing = _derived(session, interactions, response_id, key)
    if existing is None or existing.get("status") == WITHDRAWN:
        return
    body = {k: v for k, v in existing.items() if k != "meta"}
    version = int(existing["meta"]["versionId"])
    interactions.update(
        session, "Observation", existing["id"], {**body, "status": WITHDRAWN}, if_match=version
    )


def derive_baselines(session: Session, interactions: Interactions, response_id: str) -> None:
    """Bring the totals derived from the response's current version here up to date."""
    instruments: tuple[Instrument, ...] = scoring().instruments
    response = _current(session, interactions, "QuestionnaireResponse", response_id)
    content = response.resource if response is not None else None
    if content is None or content.get("status") == WITHDRAWN:
        for instrument in instruments:
            _withdraw(session, interactions, response_id, instrument.key)
        return
    if content.get("status") not in DERIVING:
        return
    assert response is not None
    questionnaire = _questionnaire(session, interactions, content.get("questionnaire"))
    if questionnaire is None:
        # Scored when the Questionnaire's own event arrives (derive_for_questionnaire).
        log.info("QuestionnaireResponse/%s: its Questionnaire is not here yet", response_id)
        return
    subject = content.get("subject") or {}
    reference = subject.get("reference") if isinstance(subject, dict) else None
    kind, patient_id = parse_reference(reference) if isinstance(reference, str) else (None, None)
    if kind != "Patient" or patient_id is None:
        return  # not a patient's response: no outcome measure
    if _current(session, interactions, "Patient", patient_id) is None:
        # Scored when the patient's own event arrives (derive_for_patient).
        log.info("QuestionnaireResponse/%s: its patient is not here yet", response_id)
        return
    for instrument in instruments:
        found = total(instrument, questionnaire, content)
        if found is None:
            _withdraw(session, interactions, response_id, instrument.key)
        else:
            _record(session, interactions, response, patient_id, found)
