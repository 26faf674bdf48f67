"""Write rule: a Consent or an EpisodeOfCare must be about a Patient stored here."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

from shared.fhir.errors import FHIRError, invalid

if TYPE_CHECKING:
    from shared.fhir.rules import WriteContext


def patient_id_of(reference: Any) -> str | None:
    """The id in a `Patient/<id>` reference (relative or absolute), else None."""
    text = reference.get("reference") if isinstance(reference, dict) else None
    parts = text.rstrip("/").split("/") if isinstance(text, str) else []
    return parts[-1] if len(parts) >= 2 and parts[-2] == "Patient" and parts[-1] else None


def known_patient(context: WriteContext) -> None:
    """422 naming `<Type>.patient` when it is missing, not a Patient, or not stored here."""
    if context.resource is None:
        return  # a delete
    where = [f"{context.res_type}.patient"]
    reference = context.resource.get("patient")
    patient_id = patient_id_of(reference)
    if patient_id is None:
        raise invalid(f"A {context.res_type} here must name its patient as Patient/<id>", where)
    with contextlib.suppress(FHIRError):
        context.interactions.store.read(context.session, "Patient", patient_id)
        return
    raise invalid(f"Unknown patient Patient/{patient_id}", where)
