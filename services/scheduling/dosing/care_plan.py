"""CarePlan, the patient's dosing course: the protocol it follows and its window tailoring.

The protocol is `instantiatesCanonical` = `<canonical_base>/PlanDefinition/<id>|<version>`
(the version of dosing-protocols.json; left out, the one in force is pinned). The tailoring
extension's `author` is always the clinician whose token changed the tailoring.

An active dosing CarePlan always has `period.start`, the start of its course: the booking
rules count only the dosing sessions from then on towards the course's length and cadence
(earlier ones are of an earlier course). A client may give it; else the plan gets the time it
was written active (kept on later writes that leave it out).
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

from services.scheduling.dosing.extensions import (
    protocol_prefix,
    read_tailoring,
    tailoring_url,
    with_author,
)
from services.scheduling.dosing.protocol import Protocol, dosing_protocols
from shared.auth.principal import acting_person
from shared.fhir.dates import format_instant, utcnow
from shared.fhir.errors import FHIRError, invalid

if TYPE_CHECKING:
    from shared.fhir.rules import WriteContext

CANONICAL = "CarePlan.instantiatesCanonical"
CLINICIANS = ("Practitioner/", "PractitionerRole/")


def _dosing_canonical(care_plan: dict[str, Any], base: str) -> tuple[int, str] | None:
    """The index and text of the CarePlan's dosing protocol canonical; 422 for several."""
    found = [
        (index, canonical)
        for index, canonical in enumerate(care_plan.get("instantiatesCanonical") or [])
        if isinstance(canonical, str) and canonical.startswith(protocol_prefix(base))
    ]
    if len(found) > 1:
        raise invalid("A CarePlan follows at most one dosing protocol", [CANONICAL])
    return found[0] if found else None


def care_plan_protocol(care_plan: dict[str, Any], base: str) -> Protocol | None:
    """The dosing protocol a stored CarePlan follows (None when it follows none known)."""
    with contextlib.suppress(FHIRError):
        found = _dosing_canonical(care_plan, base)
        if found is not None:
            protocol_id = found[1].removeprefix(protocol_prefix(base)).split("|", 1)[0]
            return dosing_protocols().get(protocol_id)
    return None


def check_care_plan(context: WriteContext) -> None:
    """Write rule: 422 for an unknown protocol or version, or a malformed or unordered
    tailoring (naming the extension), or a tailoring without a dosing protocol."""
    care_plan = context.resource
    if care_plan is None:
        return
    base = context.interactions.settings.canonical_base
    tailoring = read_tailoring(care_plan, base)
    found = _dosing_canonical(care_plan, base)
    if found is None:
        if tailoring is not None:
            where = f"CarePlan.extension('{tailoring_url(base)}')"
            raise invalid("A window tailoring needs a dosing protocol", [where, CANONICAL])
        return
    index, canonical = found
    where = f"{CANONICAL}[{index}]"
    protocol_id, _, version = canonical.removeprefix(protocol_prefix(base)).partition("|")
    table = dosing_protocols()
    protocol = table.get(protocol_id)
    if protocol is None:
        known = ", ".join(table.protocols)
        raise invalid(f"Unknown dosing protocol '{protocol_id}' (known: {known})", [where])
    previous = context.previous.resource if context.previous is not None else None
    unchanged = previous is not None and canonical in (previous.get("instantiatesCanonical") or [])
    if version and version != table.version and not unchanged:
        raise invalid(
            f"Dosing protocol version '{version}' is not the one in force ({table.version})",
            [where],
        )
    if tailoring is not None:
        try:
            tailoring.applied_to(protocol.window)
        except ValueError as exc:
            where = f"CarePlan.extension('{tailoring_url(base)}')"
            raise invalid(f"The window tailoring is not a window: {exc}", [where]) from None


def _clinician() -> str:
    """The clinician changing a tailoring: the token's fhirUser; 403 for anyone else."""
    person = acting_person()
    if not person.startswith(CLINICIANS):
        raise FHIRError(
            403, "A window tailoring is set by a clinician (a Practitioner)", code="forbidden"
        )
    return person


def _course_start(context: WriteContext) -> str:
    """The start of an active dosing plan's course when the client gave none: the one the
    plan had; for a plan stored active without one (before this enricher), its creation
    (version 1); else now, the plan becoming active."""
    previous = context.previous
    if previous is None or previous.resource is None:
        return format_instant(utcnow())
    before = (previous.resource.get("period") or {}).get("start")
    if isinstance(before, str):
        return before
    if previous.resource.get("status") == "active":
        store = context.interactions.store
        with contextlib.suppress(FHIRError):
            return format_instant(
                store.vread(context.session, "CarePlan", previous.id, 1).last_updated
            )
    return format_instant(utcnow())


def stamp_care_plan(context: WriteContext) -> dict[str, Any]:
    """Enricher: pin the protocol version, give an active plan its course start (period.start,
    see the module's docstring), and name the tailoring's author (the clinician when the
    tailoring changes, else the author it already had); only a clinician removes one."""
    care_plan = context.resource or {}
    base = context.interactions.settings.canonical_base
    found = _dosing_canonical(care_plan, base)
    if found is not None and "|" not in found[1]:
        canonicals = list(care_plan["instantiatesCanonical"])
        canonicals[found[0]] = f"{found[1]}|{dosing_protocols().version}"
        care_plan = {**care_plan, "instantiatesCanonical": canonicals}
    period = care_plan.get("period") or {}
    if found is not None and care_plan.get("status") == "active" and "start" not in period:
        care_plan = {**care_plan, "period": {**period, "start": _course_start(context)}}
    tailoring = read_tailoring(care_plan, base)
    before = None
    if context.previous is not None and context.previous.resource is not None:
        with contextlib.suppress(FHIRError):
            before = read_tailoring(context.previous.resource, base)
    if tailoring is None:
        if before is not None:
            _clinician()  # removing a tailoring is a change of it too
        return care_plan
    same = (
        before is not None
        and before.author is not None
        and (before.offsets, before.reason) == (tailoring.offsets, tailoring.reason)
    )
    author = before.author if same and before is not None else _clinician()
    assert author is not None
    return with_author(care_plan, base, author)
