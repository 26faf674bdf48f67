"""Moving the patient's EpisodeOfCare: the writes screening, the psychiatrist's review and
the treatment consent make, each closing the previous status in statusHistory."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from services.intake.screening.protocol import rule_table_extension_url
from shared.fhir.dates import format_instant, utcnow

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from shared.fhir.interactions import Interactions

# Set while the service itself writes an episode, so the client guard lets it through.
_screening_writes: ContextVar[bool] = ContextVar("screening_writes", default=False)


@contextmanager
def screening_write() -> Iterator[None]:
    token = _screening_writes.set(True)
    try:
        yield
    finally:
        _screening_writes.reset(token)


def is_screening_write() -> bool:
    """Whether the service itself (not a client) is writing an episode just now."""
    return _screening_writes.get()


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
