"""Declarations of what a service serves: resource types, their search parameters, ownership."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

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


@dataclass(frozen=True)
class ResourceDef:
    """One resource type a service serves; declaring it is all it takes to serve it."""

    type: str
    params: tuple[SearchParam, ...]
    # The service that writes this type; others serve it read-only as a replica.
    owner: str
    # Extra required-binding-like checks can be declared later by domain issues.
    profile: str | None = None

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

    def add(self, definition: ResourceDef) -> None:
        self.resources[definition.type] = definition

    def get(self, resource_type: str) -> ResourceDef | None:
        return self.resources.get(resource_type)

    def owns(self, resource_type: str) -> bool:
        definition = self.resources.get(resource_type)
        return definition is not None and definition.owner == self.service
