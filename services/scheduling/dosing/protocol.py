"""The dosing protocols: a versioned file in the repository, loaded and checked at start.

The numbers are configuration (protocols/dosing-protocols.json, each with its source), never
written into code; a malformed file stops the service from starting (see parse_protocols).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from services.scheduling.dosing.protocol_parts import (
    Coding,
    Dose,
    Monitoring,
    Phase,
    ProtocolFileError,
    coding,
    dose,
    monitoring,
    number,
    offsets,
    phases,
)
from services.scheduling.dosing.window import Offsets

PROTOCOLS_FILE = Path(__file__).resolve().parent.parent / "protocols" / "dosing-protocols.json"
_ID_CHARS = set("abcdefghijklmnopqrstuvwxyz0123456789-")


@dataclass(frozen=True)
class Protocol:
    """One dosing protocol; `reference` (id|version) names it on CarePlans and windows."""

    id: str
    version: str
    display: str
    route: Coding
    medications: tuple[Coding, ...]
    # False: applies only through a patient's CarePlan, never guessed from code and route.
    match_without_care_plan: bool
    dose: Dose
    window: Offsets
    minimum_interval_hours: float
    administration_minutes: float | None
    course: tuple[Phase, ...]
    course_doses: int | None
    monitoring: Monitoring

    @property
    def reference(self) -> str:
        return f"{self.id}|{self.version}"

    def accepts(self, medication: Coding | None, route: Coding | None) -> bool:
        """Whether an administration of `medication` by `route` follows this protocol."""
        return route == self.route and medication in self.medications


@dataclass(frozen=True)
class ProtocolTable:
    """Every protocol of one version of the file, keyed by id."""

    version: str
    protocols: dict[str, Protocol]

    def get(self, protocol_id: str) -> Protocol | None:
        return self.protocols.get(protocol_id)

    def matching(self, medication: Coding | None, route: Coding | None) -> Protocol | None:
        """The protocol an administration follows when no CarePlan names one."""
        found = [
            p
            for p in self.protocols.values()
            if p.match_without_care_plan and p.accepts(medication, route)
        ]
        return found[0] if found else None  # unique: parse_protocols checks it

    def medication_codes(self) -> set[Coding]:
        return {code for p in self.protocols.values() for code in p.medications}


def _protocol(key: str, data: Any, version: str, shared: dict[str, Any]) -> Protocol:
    where = f"protocols.{key}"
    if not isinstance(data, dict):
        raise ProtocolFileError(f"{where} must be an object")
    if not key or not set(key) <= _ID_CHARS:
        raise ProtocolFileError(f"{where}: ids are lower-case letters, digits and '-'")
    interval = data.get("minimumIntervalHours") or {}
    duration = data.get("administrationMinutes")
    course = data.get("course") or {}
    doses = course.get("doses")
    return Protocol(
        id=key,
        version=version,
        display=str(data.get("display") or key),
        route=coding(data.get("route"), f"{where}.route"),
        medications=tuple(
            coding(item, f"{where}.medications[{i}]")
            for i, item in enumerate(data.get("medications", []))
        ),
        match_without_care_plan=data.get("matchWithoutCarePlan") is True,
        dose=dose(data.get("dose"), f"{where}.dose"),
        window=(
            offsets(data["window"], f"{where}.window") if "window" in data else shared["window"]
        ),
        minimum_interval_hours=number(interval.get("value"), f"{where}.minimumIntervalHours"),
        administration_minutes=(
            None
            if duration is None
            else number(duration.get("value"), f"{where}.administrationMinutes")
        ),
        course=phases(course.get("phases", []), f"{where}.course.phases"),
        course_doses=None if doses is None else int(number(doses, f"{where}.course.doses")),
        monitoring=shared["monitoring"],
    )


def parse_protocols(data: Any) -> ProtocolTable:
    """A ProtocolTable from the file's JSON; ProtocolFileError names the part at fault."""
    if not isinstance(data, dict) or not isinstance(data.get("protocols"), dict):
        raise ProtocolFileError("the file must be an object with 'version' and 'protocols'")
    version = data.get("version")
    if not isinstance(version, str) or not version.strip():
        raise ProtocolFileError("version must be a non-empty string")
    shared = {
        "window": offsets(data.get("window"), "window"),
        "monitoring": monitoring(data.get("monitoring"), "monitoring"),
    }
    table = ProtocolTable(
        version,
        {key: _protocol(key, item, version, shared) for key, item in data["protocols"].items()},
    )
    if not table.protocols:
        raise ProtocolFileError("protocols must name at least one protocol")
    claimed: dict[tuple[Coding, Coding], str] = {}
    for protocol in table.protocols.values():
        if not protocol.match_without_care_plan:
            continue
        for medication in protocol.medications:
            other = claimed.setdefault((medication, protocol.route), protocol.id)
            if other != protocol.id:
                # Without a CarePlan, code and route must lead to one protocol only.
                raise ProtocolFileError(
                    f"protocols {other} and {protocol.id} both match {medication.code} by "
                    f"route {protocol.route.code} without a CarePlan"
                )
    return table


def load_protocols(path: Path) -> ProtocolTable:
    """Read and check a protocol file; any fault is a ProtocolFileError naming the file."""
    try:
        return parse_protocols(json.loads(path.read_text()))
    except (OSError, json.JSONDecodeError, ProtocolFileError) as exc:
        raise ProtocolFileError(f"{path.name}: {exc}") from None


@cache
def dosing_protocols() -> ProtocolTable:
    """The protocols shipped with scheduling (loaded once; the app loads it at start)."""
    return load_protocols(PROTOCOLS_FILE)
