"""Write rule on Observation: the subject is a Patient outcomes knows from its replica of
intake's patients. One not there yet (its event still on the way) is looked up at intake once
before the write is refused (shared.fhir.rules.MissingReplica)."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

from shared.fhir.errors import FHIRError, invalid
from shared.fhir.references import parse_reference
from shared.fhir.rules import MissingReplica

if TYPE_CHECKING:
    from shared.fhir.rules import WriteContext

WHERE = ["Observation.subject"]


def known_subject(context: WriteContext) -> None:
    """422 naming `Observation.subject` unless it is `Patient/<id>` of a current Patient here
    (after one lookup at the owner when it is not)."""
    resource = context.resource
    if resource is None:
        return  # a delete
    subject = resource.get("subject")
    text = subject.get("reference") if isinstance(subject, dict) else None
    res_type, patient_id = parse_reference(text) if isinstance(text, str) else (None, None)
    if res_type != "Patient" or patient_id is None:
        raise invalid("An Observation here must name its subject as Patient/<id>", WHERE)
    with contextlib.suppress(FHIRError):
        context.interactions.store.read(context.session, "Patient", patient_id)
        return
    settings = context.interactions.settings
    owner = context.interactions.registry.resources["Patient"].owner
    if owner in settings.peer_urls:
        why = f"neither in this service's replica nor at {owner}"
    else:
        # Embedded use without the owner's address: only replicated patients are known.
        why = (
            f"not in this service's replica, and {owner} cannot be asked: no owner URL is "
            f"configured ({settings.service_name.upper()}_PEER_URLS has no '{owner}')"
        )
    raise MissingReplica(
        "Patient", patient_id, f"Unknown patient Patient/{patient_id}: {why}", WHERE
    )
