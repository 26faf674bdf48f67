"""Our extensions, read and written: the window tailoring (CarePlan), the computed window and
the dose-range override (MedicationAdministration). protocols/README.md describes them."""

from __future__ import annotations

import math
from decimal import Decimal
from typing import Any

from services.scheduling.dosing.window import OFFSET_NAMES, Tailoring, Window, format_utc
from shared.fhir.errors import invalid

UCUM = "http://unitsofmeasure.org"


def tailoring_url(base: str) -> str:
    return f"{base}/StructureDefinition/plasticity-window-tailoring"


def window_url(base: str) -> str:
    return f"{base}/StructureDefinition/plasticity-window"


def override_url(base: str) -> str:
    return f"{base}/StructureDefinition/dose-range-override"


def protocol_prefix(base: str) -> str:
    """CarePlan.instantiatesCanonical of a dosing protocol: `<prefix><id>|<version>`."""
    return f"{base}/PlanDefinition/"


def _of(resource: dict[str, Any], url: str) -> list[dict[str, Any]]:
    return [e for e in resource.get("extension") or [] if e.get("url") == url]


def number(value: Any) -> float | None:
    """A JSON number as a float (client JSON keeps decimals exact); None for anything else."""
    if isinstance(value, bool) or not isinstance(value, (int, float, Decimal)):
        return None
    found = float(value)
    return found if math.isfinite(found) else None


def _hours(sub: dict[str, Any], where: str) -> float:
    duration = sub.get("valueDuration")
    value = number(duration.get("value")) if isinstance(duration, dict) else None
    if (
        not isinstance(duration, dict)
        or duration.get("system") != UCUM
        or duration.get("code") != "h"
        or value is None
    ):
        raise invalid("A window offset is a valueDuration in hours (UCUM 'h')", [where])
    return value


def read_tailoring(care_plan: dict[str, Any], base: str) -> Tailoring | None:
    """The CarePlan's tailoring (None without one); 422 naming the part that is malformed."""
    url = tailoring_url(base)
    found = _of(care_plan, url)
    where = f"CarePlan.extension('{url}')"
    if not found:
        return None
    if len(found) > 1:
        raise invalid("A CarePlan carries at most one window tailoring", [where])
    offsets: dict[str, float] = {}
    reason, author = None, None
    for sub in found[0].get("extension") or []:
        name = sub.get("url")
        at = f"{where}.extension('{name}')"
        if name in OFFSET_NAMES and name not in offsets:
            offsets[name] = _hours(sub, at)
        elif name == "reason" and reason is None:
            reason = sub.get("valueString")
        elif name == "author" and author is None:
            author = (sub.get("valueReference") or {}).get("reference")
        else:
            allowed = ", ".join((*OFFSET_NAMES, "reason", "author"))
            raise invalid(f"A tailoring has one each of {allowed}; not '{name}' here", [at])
    if not offsets:
        raise invalid("A window tailoring names at least one offset", [where])
    if not isinstance(reason, str) or not reason.strip():
        raise invalid("A window tailoring needs its reason", [f"{where}.extension('reason')"])
    return Tailoring(offsets, reason, author)


def with_author(care_plan: dict[str, Any], base: str, author: str) -> dict[str, Any]:
    """A copy of the CarePlan whose tailoring names `author` (any other author replaced)."""
    url = tailoring_url(base)
    extensions = []
    for extension in care_plan.get("extension") or []:
        if extension.get("url") == url:
            subs = [s for s in extension.get("extension") or [] if s.get("url") != "author"]
            author_sub = {"url": "author", "valueReference": {"reference": author}}
            extension = {**extension, "extension": [*subs, author_sub]}
        extensions.append(extension)
    return {**care_plan, "extension": extensions}


def window_extension(base: str, window: Window, care_plan: str | None) -> dict[str, Any]:
    """The computed window as stored on a MedicationAdministration."""
    subs: list[dict[str, Any]] = [
        {"url": name, "valueDateTime": format_utc(moment)}
        for name, moment in window.moments().items()
    ]
    subs.append({"url": "protocol", "valueString": window.protocol})
    if care_plan is not None:
        # The CarePlan version whose tailoring was in force.
        subs.append({"url": "carePlan", "valueReference": {"reference": care_plan}})
    return {"url": window_url(base), "extension": subs}


def read_window(resource: dict[str, Any], base: str) -> dict[str, str] | None:
    """The stored window's moments and protocol by name (None when there is none)."""
    found = _of(resource, window_url(base))
    if not found:
        return None
    values: dict[str, str] = {}
    for sub in found[0].get("extension") or []:
        value = sub.get("valueDateTime", sub.get("valueString"))
        if isinstance(value, str):
            values[sub["url"]] = value
    return values


def without(resource: dict[str, Any], url: str) -> dict[str, Any]:
    """A copy of the resource without the extensions of `url` (no empty list left)."""
    others = [e for e in resource.get("extension") or [] if e.get("url") != url]
    copy = {key: value for key, value in resource.items() if key != "extension"}
    return {**copy, "extension": others} if others else copy


def override_reason(administration: dict[str, Any], base: str) -> str | None:
    """Why a dose out of the protocol's range was given (None: no override)."""
    url = override_url(base)
    found = _of(administration, url)
    if not found:
        return None
    reason = found[0].get("valueString")
    if len(found) > 1 or not isinstance(reason, str) or not reason.strip():
        where = f"MedicationAdministration.extension('{url}')"
        raise invalid("A dose-range override is one valueString: the reason", [where])
    return reason
