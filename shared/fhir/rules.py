"""Write rules and enrichers: per-type checks, follow-up writes and derived elements, inside
the writer's transaction."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from shared.fhir.errors import FHIRError

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from shared.fhir.interactions import Interactions
    from shared.fhir.store import Stored

Action = Literal["create", "update", "delete"]


@dataclass
class WriteContext:
    """One write about to be stored, as a rule sees it.

    A rule refuses the write by raising a FHIRError (its OperationOutcome goes to the client
    and the transaction rolls back), or writes further resources through `interactions` with
    `session`: those go through their own rules and the outbox, in the same transaction.
    """

    session: Session
    interactions: Interactions
    action: Action
    res_type: str
    res_id: str | None
    # The resource as it will be stored (None for a delete). Rules must not change it; an
    # Enricher returns a changed copy instead, which the next enricher then sees here.
    resource: dict[str, Any] | None
    _previous: Stored | None = None
    _looked_up: bool = False

    @property
    def previous(self) -> Stored | None:
        """The current stored version before this write (None when there is none)."""
        if not self._looked_up and self.res_id is not None:
            # One read: an id never stored (404) or deleted (410) has no previous version.
            with contextlib.suppress(FHIRError):
                self._previous = self.interactions.store.read(
                    self.session, self.res_type, self.res_id
                )
            self._looked_up = True
        return self._previous


WriteRule = Callable[[WriteContext], None]

Enricher = Callable[[WriteContext], dict[str, Any]]
"""Derives elements the service owns (a computed extension, a server-set author) once every
rule has passed: returns the resource to store, `context.resource` itself or a changed copy
(never changed in place). A changed copy is validated again, so what is stored stays valid
FHIR R4; an enricher may refuse the write by raising a FHIRError, as a rule does. Access was
checked on the client's content: an enricher leaves the subject and patient references be."""


class MissingReplica(FHIRError):
    """A write refused because a replicated resource it needs (`res_type`/`res_id`) is not
    current here: its event may not have arrived yet. The request is run again once after the
    resource has been fetched from its owner (FHIRContext.write); when the owner has no such
    resource, or no owner URL is configured, this error (422 unless said otherwise) is the
    answer."""

    def __init__(
        self,
        res_type: str,
        res_id: str,
        diagnostics: str,
        expression: list[str] | None = None,
        *,
        status: int = 422,
        code: str = "invalid",
    ):
        super().__init__(status, diagnostics, code=code, expression=expression)
        self.res_type = res_type
        self.res_id = res_id
