"""The steps of a load: resources to put, waits for another service to learn of them,
reviews, and groups of puts that may run together."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

SERVICES = ("intake", "scheduling", "outcomes")


@dataclass(frozen=True)
class Put:
    """`PUT [base]/<type>/<id>` at `service`: a create under the demo's stable id, or an update."""

    service: str
    resource: dict[str, Any]

    @property
    def path(self) -> str:
        return f"/{self.resource['resourceType']}/{self.resource['id']}"


@dataclass(frozen=True)
class Await:
    """Poll `service` until it holds what another service's events bring: the resource at
    `path`, or (with `query`) a search match, in `status` when one is given."""

    service: str
    path: str
    query: tuple[tuple[str, str], ...] = ()
    status: str | None = None


@dataclass(frozen=True)
class Review:
    """The psychiatrist's `$review` of the patient's onhold episode (intake)."""

    patient: str
    decision: str  # eligible | excluded
    reason: str


@dataclass(frozen=True)
class Together:
    """Puts at one service that depend on nothing among themselves: one batch Bundle."""

    puts: tuple[Put, ...]


@dataclass(frozen=True)
class Transaction:
    """Puts at one service that go in together, in order, or not at all."""

    puts: tuple[Put, ...]


Step = Put | Await | Review | Together | Transaction


@dataclass
class PatientPlan:
    """One patient's steps in order, and what the plan made of them."""

    patient: str
    pathway: str  # excluded | reviewed-excluded | reviewed-eligible | clear | declined
    protocol: str | None
    steps: list[Step] = field(default_factory=list)
    offsets: list[float] = field(default_factory=list)  # EMDR sessions' hours after a dose

    def puts(self) -> list[Put]:
        """Every resource put, in order."""
        found: list[Put] = []
        for step in self.steps:
            if isinstance(step, Put):
                found.append(step)
            elif isinstance(step, Together | Transaction):
                found.extend(step.puts)
        return found


@dataclass
class Cohort:
    """The whole load: the clinic first, then the patients."""

    seed: int
    clinic: list[Put]
    patients: list[PatientPlan]

    def puts(self) -> list[Put]:
        return [*self.clinic, *(p for plan in self.patients for p in plan.puts())]

    def fingerprint(self) -> str:
        """Every body in order, as canonical JSON (equal for equal cohorts)."""
        return "\n".join(
            f"{put.service} {json.dumps(put.resource, sort_keys=True)}" for put in self.puts()
        )
