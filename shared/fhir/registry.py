"""Declarations of what a service serves: resource types, their search parameters, ownership."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from shared.events.reactions import Reaction
    from shared.fhir.operations import Operation
    from shared.fhir.projections import Projection
    from shared.fhir.rules import Enricher, WriteRule

ParamType = Literal["token", "string", "date", "reference", "quantity", "number", "uri"]


@dataclass(frozen=True)
class SearchParam:
    """A FHIR search parameter and the JSON paths its index values come from."""

    name: str
    type: ParamType
    paths: tuple[str, ...]
    # For references: the resource types this parameter may point at (empty: any).
    targets: tuple[str, ...] = ()
    description: str = ""

    @property
    def kind(self) -> str:
        """The index table its values live in: uris are tokens without a system."""
        return "token" if self.type == "uri" else self.type


@dataclass(frozen=True)
class ResourceDef:
    """One resource type a service serves; declaring it is all it takes to serve it."""

    type: str
    params: tuple[SearchParam, ...]
    # The service that writes this type; others serve it read-only as a replica.
    owner: str
    # Checks and follow-up writes run in the writer's transaction (owned types only).
    rules: tuple[WriteRule, ...] = ()
    # Run after the rules: each returns the resource to store (derived elements added).
    enrichers: tuple[Enricher, ...] = ()
    # Type- and instance-level operations ($name) served on this type.
    operations: tuple[Operation, ...] = ()
    # False for types only the service itself writes (AuditEvent): every API write is a 405.
    api_writable: bool = True

    def param(self, name: str) -> SearchParam | None:
        for candidate in self.params:
            if candidate.name == name:
                return candidate
        return None


@dataclass
class Registry:
    """The resource types one service serves, keyed by type name."""

    service: str
    resources: dict[str, ResourceDef] = field(default_factory=dict)
    # System-level operations (`[base]/$name`).
    operations: list[Operation] = field(default_factory=list)
    # Event type (e.g. `fhir.Patient.deleted`) -> what this service does when one arrives.
    reactions: dict[str, list[Reaction]] = field(default_factory=dict)
    # Resource type -> the tables kept in step with it (shared/fhir/projections.py).
    projections: dict[str, list[Projection]] = field(default_factory=dict)

    def add(self, definition: ResourceDef) -> None:
        self.resources[definition.type] = definition

    def react(self, event_type: str, reaction: Reaction) -> None:
        """Run `reaction` for every event of `event_type` from a replicated type."""
        self.reactions.setdefault(event_type, []).append(reaction)

    def project(self, *projections: Projection) -> None:
        """Keep each projection's table in step with its resource type."""
        for projection in projections:
            self.projections.setdefault(projection.res_type, []).append(projection)

    def get(self, resource_type: str) -> ResourceDef | None:
        return self.resources.get(resource_type)

    def owns(self, resource_type: str) -> bool:
        definition = self.resources.get(resource_type)
        return definition is not None and definition.owner == self.service
