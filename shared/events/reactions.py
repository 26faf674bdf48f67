"""Reactions: a service's own writes in answer to another service's events."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from shared.events.envelope import ResourceEvent
    from shared.fhir.interactions import Interactions


@dataclass
class ReactionContext:
    """An event just applied to the replica, and the means to write in the same transaction.

    Writes made through `interactions` with `session` pass the write rules and the outbox
    like an HTTP request's, and commit with the processed-event row: a redelivered event
    is skipped before its reactions run, so none acts twice.
    """

    session: Session
    interactions: Interactions
    event: ResourceEvent

    @property
    def subject(self) -> tuple[str, str]:
        """The (type, id) the event is about."""
        return self.event.res_type, self.event.res_id


Reaction = Callable[[ReactionContext], None]
