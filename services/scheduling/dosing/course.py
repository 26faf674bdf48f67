"""Which dosing protocol a MedicationAdministration follows, and the CarePlan that says so.

First the patient's active CarePlan whose protocol covers the medication and route (its
tailoring then applies); without one, the protocol the file matches to the code and route.
A dose of a protocol medication that no protocol covers by its route is refused (422).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from services.scheduling.dosing.care_plan import care_plan_protocol
from services.scheduling.dosing.protocol import Protocol, dosing_protocols
from services.scheduling.dosing.protocol_parts import Coding
from shared.fhir.errors import invalid

if TYPE_CHECKING:
    from shared.fhir.rules import WriteContext

# Administrations that record no dose given: no protocol, check or window applies.
NOT_GIVEN = ("not-done", "entered-in-error")
ROUTE = "MedicationAdministration.dosage.route"
_PLACEHOLDER = "{canonical_base}"


@dataclass(frozen=True)
class Course:
    """The protocol an administration follows and the CarePlan naming it (None: by code)."""

    protocol: Protocol
    care_plan: dict[str, Any] | None


def _codings(concept: Any, base: str) -> list[Coding]:
    """A CodeableConcept's codings; our own systems as the protocol file writes them."""
    found = []
    for coding in (concept or {}).get("coding") or []:
        system, code = coding.get("system"), coding.get("code")
        if isinstance(system, str) and isinstance(code, str):
            if system.startswith(f"{base}/"):
                system = _PLACEHOLDER + system[len(base) :]
            found.append(Coding(system, code))
    return found


def _active_plans(context: WriteContext, subject: Any) -> list[dict[str, Any]]:
    reference = subject.get("reference") if isinstance(subject, dict) else None
    if not isinstance(reference, str) or not reference.startswith("Patient/"):
        return []
    pairs = [("patient", reference), ("status", "active"), ("_count", "100")]
    search = context.interactions.search(context.session, "CarePlan", pairs, strict=True)
    return search.resources


def find_course(context: WriteContext, administration: dict[str, Any]) -> Course | None:
    """The course of this administration, or None when it is not a protocol medication."""
    if administration.get("status") in NOT_GIVEN:
        return None
    base = context.interactions.settings.canonical_base
    table = dosing_protocols()
    medications = _codings(administration.get("medicationCodeableConcept"), base)
    known = [m for m in medications if m in table.medication_codes()]
    if not known:
        return None
    routes = _codings((administration.get("dosage") or {}).get("route"), base)
    if not routes:
        raise invalid(f"A dose of {known[0].code} needs its route to tell its protocol", [ROUTE])
    pairs = [(m, r) for m in known for r in routes]
    plans = []
    for plan in _active_plans(context, administration.get("subject")):
        protocol = care_plan_protocol(plan, base)
        if protocol is not None and any(protocol.accepts(m, r) for m, r in pairs):
            plans.append(Course(protocol, plan))
    if len(plans) > 1:
        names = ", ".join(f"CarePlan/{c.care_plan['id']}" for c in plans if c.care_plan)
        raise invalid(
            f"The patient has {len(plans)} active dosing CarePlans for this medication and "
            f"route ({names}): end all but one",
            ["MedicationAdministration.subject"],
        )
    if plans:
        return plans[0]
    for medication, route in pairs:
        protocol = table.matching(medication, route)
        if protocol is not None:
            return Course(protocol, None)
    shown = ", ".join(sorted({r.code for r in routes}))
    raise invalid(f"No dosing protocol gives {known[0].code} by route {shown}", [ROUTE])
