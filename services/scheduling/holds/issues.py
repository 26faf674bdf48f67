"""Scheduling's DetectedIssues about dosing sessions: the pre-dose blood pressure hold and
post-dose rescue thresholds, coded in the programme's `dosing-safety` CodeSystem.

A hold is in force while its issue is `preliminary` (awaiting the psychiatrist's review);
the release makes it `final` with a mitigation. Held sessions are found with
`GET [base]/DetectedIssue?code=<base>/CodeSystem/dosing-safety|pre-dose-bp-hold&status=preliminary`
(the session is in `implicated`), and each held Appointment carries the `dose-hold`
extension naming its issue.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from services.scheduling.dosing.protocol import dosing_protocols
from services.scheduling.dosing.protocol_parts import Monitoring
from shared.fhir.dates import format_instant, utcnow

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from shared.fhir.interactions import Interactions

HOLD, RESCUE, RELEASED = "pre-dose-bp-hold", "post-dose-rescue", "hold-released"


def safety_system(base: str) -> str:
    return f"{base}/CodeSystem/dosing-safety"


def hold_url(base: str) -> str:
    """Appointment extension (valueReference DetectedIssue) while a dose hold is in force."""
    return f"{base}/StructureDefinition/dose-hold"


def monitoring() -> Monitoring:
    """The programme's monitoring thresholds (one `monitoring` part for every protocol)."""
    return next(iter(dosing_protocols().protocols.values())).monitoring


def open_hold(
    interactions: Interactions, session: Session, appointment_id: str
) -> dict[str, Any] | None:
    """The hold in force on the session (None: no hold)."""
    base = interactions.settings.canonical_base
    pairs = [
        ("code", f"{safety_system(base)}|{HOLD}"),
        ("implicated", f"Appointment/{appointment_id}"),
        ("status", "preliminary"),
        ("_count", "1"),
    ]
    found = interactions.search(session, "DetectedIssue", pairs, strict=True).resources
    return found[0] if found else None


def raise_issue(
    interactions: Interactions,
    session: Session,
    *,
    code: str,
    patient: str,
    implicated: list[str],
    detail: str,
) -> dict[str, Any]:
    """Create a DetectedIssue (a hold is preliminary until released, a rescue final)."""
    base = interactions.settings.canonical_base
    issue: dict[str, Any] = {
        "resourceType": "DetectedIssue",
        "status": "preliminary" if code == HOLD else "final",
        "code": {"coding": [{"system": safety_system(base), "code": code}]},
        "severity": "high",
        "patient": {"reference": patient},
        "identifiedDateTime": format_instant(utcnow()),
        "implicated": [{"reference": reference} for reference in implicated],
        "detail": detail,
    }
    return interactions.create(session, "DetectedIssue", issue).stored.resource
