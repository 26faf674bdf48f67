"""What the programme operations read from the settings before their session opens."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from services.outcomes.programme.bins import DEFAULT_EDGES, OffsetBin, offset_bins, parse_edges
from shared.fhir.operations import OperationParam
from shared.settings import ServiceSettings


@dataclass(frozen=True)
class Setup:
    """The canonical base (for local codes) and the offset bins."""

    canonical_base: str
    bins: tuple[OffsetBin, ...]


async def setup(inputs: dict[str, list[Any]], settings: ServiceSettings) -> Setup:
    """The operation's settings (no I/O: handed to the handler as `call.prepared`)."""
    edges = parse_edges(getattr(settings, "window_bins_h", DEFAULT_EDGES))
    return Setup(settings.canonical_base.rstrip("/"), offset_bins(edges))


FILTERS = (
    OperationParam(
        "period",
        "string",
        max="*",
        documentation=(
            "When the patient's first completed dose started: a date with an optional prefix "
            "eq, ge, gt, le or lt (e.g. ge2026-01-01); give it twice for a range"
        ),
    ),
    OperationParam(
        "protocol",
        "string",
        max="*",
        documentation="The dosing protocol id of the first dose (several: any of them)",
    ),
    OperationParam(
        "route",
        "string",
        max="*",
        documentation="The SNOMED route code of the first dose, e.g. 47625008 (IV)",
    ),
    OperationParam(
        "practice",
        "string",
        max="*",
        documentation="Only patients of this practice (Organization/<id>), within the caller's",
    ),
)
