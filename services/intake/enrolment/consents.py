"""Whether a patient's treatment Consent is in force: plain functions over Consents, and
the search that finds them (the Consent being written counted as written)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from services.intake.enrolment.known_patient import patient_id_of
from shared.fhir.dates import DateFormatError, date_range, utcnow

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from shared.fhir.interactions import Interactions

SCOPE_SYSTEM = "http://terminology.hl7.org/CodeSystem/consentscope"
TREATMENT = f"{SCOPE_SYSTEM}|treatment"


def is_treatment(consent: dict[str, Any]) -> bool:
    """A Consent of scope treatment (research and privacy consents are not)."""
    codings = (consent.get("scope") or {}).get("coding") or []
    return any(c.get("system") == SCOPE_SYSTEM and c.get("code") == "treatment" for c in codings)


def refuses(consent: dict[str, Any]) -> bool:
    """A Consent whose base provision denies (a refusal of treatment)."""
    return (consent.get("provision") or {}).get("type") == "deny"


def period_ended(consent: dict[str, Any], now: datetime) -> bool:
    end = ((consent.get("provision") or {}).get("period") or {}).get("end")
    try:
        return bool(end) and date_range(end)[1] < now
    except DateFormatError:
        return False  # validation accepted it; an unreadable end does not end it


def in_force(consent: dict[str, Any], now: datetime) -> bool:
    """Active, and its provision.period (when given) includes `now`."""
    if consent.get("status") != "active" or period_ended(consent, now):
        return False
    start = ((consent.get("provision") or {}).get("period") or {}).get("start")
    try:
        return not start or date_range(start)[0] <= now
    except DateFormatError:
        return True


def treatment_consent(consents: Iterable[dict[str, Any]], now: datetime) -> dict[str, Any] | None:
    """The permitting treatment Consent in force (the first given), or None. A refusal in
    force wins over any permit: to consent again, the refusal is made inactive."""
    standing = [c for c in consents if is_treatment(c) and in_force(c, now)]
    if any(refuses(c) for c in standing):
        return None
    return standing[0] if standing else None


def lock_enrolment(interactions: Interactions, session: Session, patient_id: str) -> None:
    """Serialise the writers of one patient's consent state and episode until commit, so
    each reads what the one before it committed (no write skew between two revocations)."""
    interactions.store.database.lock(session, f"enrolment:Patient/{patient_id}")


def active_treatment_consent(
    interactions: Interactions,
    session: Session,
    patient_id: str,
    written: tuple[str | None, dict[str, Any] | None] | None = None,
) -> dict[str, Any] | None:
    """The patient's treatment Consent in force, newest first. `written` is a Consent
    (id, content; None when deleted) whose write is under way: rules run before the store
    writes, so the stored version is replaced by it here."""
    pairs = [
        ("patient", f"Patient/{patient_id}"),
        ("status", "active"),
        ("scope", TREATMENT),
        ("_sort", "-_lastUpdated"),
        ("_count", "100"),
    ]
    found = interactions.search(session, "Consent", pairs, strict=True).resources
    if written is not None:
        res_id, resource = written
        found = [c for c in found if c.get("id") != res_id]
        if resource is not None and patient_id_of(resource.get("patient")) == patient_id:
            found.insert(0, {**resource, "id": res_id})
    return treatment_consent(found, utcnow())
