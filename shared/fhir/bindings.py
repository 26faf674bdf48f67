"""Required-binding code checks that fhir.resources (structure only) does not make."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from shared.fhir.errors import issue

# (element class name, field) -> the codes of its required value set in FHIR R4.
REQUIRED_BINDINGS: dict[tuple[str, str], frozenset[str]] = {
    ("Narrative", "status"): frozenset({"generated", "extensions", "additional", "empty"}),
    ("Identifier", "use"): frozenset({"usual", "official", "temp", "secondary", "old"}),
    ("HumanName", "use"): frozenset(
        {"usual", "official", "temp", "nickname", "anonymous", "old", "maiden"}
    ),
    ("ContactPoint", "system"): frozenset(
        {"phone", "fax", "email", "pager", "url", "sms", "other"}
    ),
    ("ContactPoint", "use"): frozenset({"home", "work", "temp", "old", "mobile"}),
    ("Address", "use"): frozenset({"home", "work", "temp", "old", "billing"}),
    ("Address", "type"): frozenset({"postal", "physical", "both"}),
    ("Quantity", "comparator"): frozenset({"<", "<=", ">=", ">"}),
    ("TimingRepeat", "durationUnit"): frozenset({"s", "min", "h", "d", "wk", "mo", "a"}),
    ("TimingRepeat", "periodUnit"): frozenset({"s", "min", "h", "d", "wk", "mo", "a"}),
    ("Patient", "gender"): frozenset({"male", "female", "other", "unknown"}),
    ("PatientContact", "gender"): frozenset({"male", "female", "other", "unknown"}),
    ("PatientLink", "type"): frozenset({"replaced-by", "replaces", "refer", "seealso"}),
    ("Observation", "status"): frozenset(
        {
            "registered",
            "preliminary",
            "final",
            "amended",
            "corrected",
            "cancelled",
            "entered-in-error",
            "unknown",
        }
    ),
    ("Appointment", "status"): frozenset(
        {
            "proposed",
            "pending",
            "booked",
            "arrived",
            "fulfilled",
            "cancelled",
            "noshow",
            "entered-in-error",
            "checked-in",
            "waitlist",
        }
    ),
    ("AppointmentParticipant", "required"): frozenset({"required", "optional", "information-only"}),
    ("AppointmentParticipant", "status"): frozenset(
        {"accepted", "declined", "tentative", "needs-action"}
    ),
    ("MedicationAdministration", "status"): frozenset(
        {
            "in-progress",
            "not-done",
            "on-hold",
            "completed",
            "entered-in-error",
            "stopped",
            "unknown",
        }
    ),
}


def _binding_for(cls: type, field: str) -> frozenset[str] | None:
    # Walk the MRO so Age, Duration, SimpleQuantity... inherit Quantity's comparator.
    for klass in cls.__mro__:
        codes = REQUIRED_BINDINGS.get((klass.__name__, field))
        if codes is not None:
            return codes
    return None


def check_required_bindings(model: BaseModel, path: str) -> list[dict[str, Any]]:
    """Return an OperationOutcome issue for every code outside its required value set."""
    problems: list[dict[str, Any]] = []
    _walk(model, path, problems)
    return problems


def _walk(model: BaseModel, path: str, problems: list[dict[str, Any]]) -> None:
    cls = type(model)
    for name, field in cls.model_fields.items():
        value = getattr(model, name, None)
        if value is None:
            continue
        json_name = field.alias or name
        here = f"{path}.{json_name}"
        if isinstance(value, str):
            codes = _binding_for(cls, json_name)
            if codes is not None and value not in codes:
                problems.append(
                    issue(
                        "error",
                        "code-invalid",
                        f"'{value}' is not a valid code for {here}; expected one of "
                        + ", ".join(sorted(codes)),
                        [here],
                    )
                )
        elif isinstance(value, BaseModel):
            _walk(value, here, problems)
        elif isinstance(value, list):
            for index, item in enumerate(value):
                if isinstance(item, BaseModel):
                    _walk(item, f"{here}[{index}]", problems)
