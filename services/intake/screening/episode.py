"""The patient's EpisodeOfCare: its status follows screening, never a client's say-so."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from services.intake.screening.protocol import rule_table_extension_url
from shared.auth.principal import acting_person, current_principal
from shared.fhir.dates import format_instant, utcnow
from shared.fhir.errors import FHIRError, invalid

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from shared.fhir.interactions import Interactions
    from shared.fhir.rules import WriteContext

# Set while screening itself writes an episode, so the client guard lets it through.
_screening_writes: ContextVar[bool] = ContextVar("screening_writes", default=False)
# What a clinician may do by hand: end the episode.
CLINICIAN_ENDINGS = ("finished", "cancelled")


@contextmanager
def screening_write() -> Iterator[None]:
    token = _screening_writes.set(True)
    try:
        yield
    finally:
        _screening_writes.reset(token)


def guard_episode_status(context: WriteContext) -> None:
    """Write rule: a client creates an episode only as `planned` and changes its status only
    to end it (a clinician: a token whose fhirUser is a Practitioner); 422 otherwise."""
    if _screening_writes.get() or context.resource is None:
        return
    status = context.resource.get("status")
    previous = context.previous.resource if context.previous is not None else None
    if previous is None:
        if status != "planned":
            raise invalid(
                "EpisodeOfCare.status follows screening: a new episode must be 'planned'",
                ["EpisodeOfCare.status"],
            )
        return
    if status == previous.get("status"):
        return
    if status not in CLINICIAN_ENDINGS:
        raise invalid(
            "EpisodeOfCare.status follows screening; a client may only end an episode "
            f"({' or '.join(CLINICIAN_ENDINGS)})",
            ["EpisodeOfCare.status"],
        )
    if current_principal.get() is not None and not acting_person().startswith("Practitioner/"):
        raise FHIRError(
            403, "Only a clinician (a Practitioner) may end an episode", code="forbidden"
        )


def current_episode(
    interactions: Interactions, session: Session, patient_id: str
) -> dict[str, Any] | None:
    """The patient's newest episode that is not finished."""
    found = interactions.search(
        session,
        "EpisodeOfCare",
        [
            ("patient", f"Patient/{patient_id}"),
            ("status:not", "finished"),
            ("_sort", "-_lastUpdated"),
            ("_count", "1"),
        ],
        strict=True,
    )
    return found.resources[0] if found.resources else None


def status_reason_url(canonical_base: str) -> str:
    """The extension on a statusHistory entry saying why the episode took that status
    (R4 EpisodeOfCare has no element for it): a valueString."""
    return f"{canonical_base}/StructureDefinition/episode-status-reason"


def recorded_rule_table(episode: dict[str, Any], canonical_base: str) -> str | None:
    """The rule table version recorded on an episode, if any."""
    url = rule_table_extension_url(canonical_base)
    found = [e.get("valueString") for e in episode.get("extension", []) if e.get("url") == url]
    return found[0] if found else None


def move_episode(
    interactions: Interactions,
    session: Session,
    episode: dict[str, Any],
    status: str,
    rule_table_version: str | None,
    reason: str | None = None,
) -> dict[str, Any]:
    """Move this stored episode to `status`: the previous status's period is closed in
    statusHistory, the new entry carries `reason`, the deciding rule table is recorded."""
    now = format_instant(utcnow())
    base = interactions.settings.canonical_base
    changed = dict(episode)
    if rule_table_version is not None:
        recorded = {"url": rule_table_extension_url(base), "valueString": rule_table_version}
        others = [e for e in episode.get("extension", []) if e.get("url") != recorded["url"]]
        changed["extension"] = [*others, recorded]
    if episode["status"] != status:
        history = [dict(h) for h in episode.get("statusHistory", [])]
        if history and "end" not in history[-1].get("period", {}):
            history[-1] = {**history[-1], "period": {**history[-1]["period"], "end": now}}
        entry: dict[str, Any] = {"status": status, "period": {"start": now}}
        if reason:
            entry = {
                "extension": [{"url": status_reason_url(base), "valueString": reason}],
                **entry,
            }
        history.append(entry)
        changed = {**changed, "status": status, "statusHistory": history}
    if changed == episode:
        return episode
    with screening_write():
        result = interactions.update(
            session,
            "EpisodeOfCare",
            episode["id"],
            changed,
            if_match=int(episode["meta"]["versionId"]),
        )
    assert result.stored is not None and result.stored.resource is not None
    return result.stored.resource


def set_episode_status(
    interactions: Interactions,
    session: Session,
    patient_id: str,
    status: str,
    rule_table_version: str,
) -> dict[str, Any]:
    """Create the episode or move it to `status`, closing the previous status's period in
    statusHistory and recording which rule table decided."""
    episode = current_episode(interactions, session, patient_id)
    if episode is not None:
        return move_episode(interactions, session, episode, status, rule_table_version)
    now = format_instant(utcnow())
    base = interactions.settings.canonical_base
    recorded = {"url": rule_table_extension_url(base), "valueString": rule_table_version}
    new = {
        "resourceType": "EpisodeOfCare",
        "extension": [recorded],
        "status": status,
        "statusHistory": [{"status": status, "period": {"start": now}}],
        "patient": {"reference": f"Patient/{patient_id}"},
        "period": {"start": now},
    }
    with screening_write():
        result = interactions.create(session, "EpisodeOfCare", new)
    assert result.stored is not None and result.stored.resource is not None
    return result.stored.resource


def open_planned_episode(
    interactions: Interactions, session: Session, patient_id: str, referral_id: str
) -> None:
    """A referred patient not yet screened has a `planned` episode naming the referral
    (unless an episode is already open)."""
    if current_episode(interactions, session, patient_id) is not None:
        return
    now = format_instant(utcnow())
    with screening_write():
        interactions.create(
            session,
            "EpisodeOfCare",
            {
                "resourceType": "EpisodeOfCare",
                "status": "planned",
                "statusHistory": [{"status": "planned", "period": {"start": now}}],
                "patient": {"reference": f"Patient/{patient_id}"},
                "referralRequest": [{"reference": f"ServiceRequest/{referral_id}"}],
                "period": {"start": now},
            },
        )


def referral_rule(context: WriteContext) -> None:
    """Write rule on ServiceRequest: an active referral of a patient opens a planned episode."""
    referral = context.resource
    if referral is None or referral.get("status") != "active" or context.res_id is None:
        return
    parts = (referral.get("subject") or {}).get("reference", "").rstrip("/").split("/")
    if len(parts) >= 2 and parts[-2] == "Patient":
        open_planned_episode(context.interactions, context.session, parts[-1], context.res_id)
