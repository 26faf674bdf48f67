"""The patient's completed protocol doses (those carrying a computed window) and their ends."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from services.scheduling.dosing.extensions import read_window
from services.scheduling.holds.vitals import taken_at

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from shared.fhir.interactions import Interactions


def ended(administration: dict[str, Any]) -> datetime | None:
    """When a dose ended (effectivePeriod.end or effectiveDateTime), else None."""
    period = administration.get("effectivePeriod")
    if isinstance(period, dict):
        return taken_at({"effectiveDateTime": period.get("end")})
    return taken_at(administration)


def session_of(administration: dict[str, Any]) -> str | None:
    """The id of the dosing session the dose names (session_rule made it the only one)."""
    for item in administration.get("supportingInformation") or []:
        reference = str((item or {}).get("reference", ""))
        if reference.startswith("Appointment/"):
            return reference.removeprefix("Appointment/")
    return None


def completed_doses(
    interactions: Interactions, session: Session, patient: str
) -> list[dict[str, Any]]:
    """The patient's completed protocol doses (a window is stamped only on those)."""
    base = interactions.settings.canonical_base
    pairs = [("patient", patient), ("status", "completed"), ("_count", "200")]
    found = interactions.search(session, "MedicationAdministration", pairs, strict=True)
    return [dose for dose in found.resources if read_window(dose, base) is not None]
