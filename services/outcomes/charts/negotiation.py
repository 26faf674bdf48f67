"""Which chart a request asks for, and the renderers the outcome operations offer."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

from services.outcomes.charts.programme import render_programme
from services.outcomes.charts.trajectory import render_trajectory
from services.outcomes.charts.window import render_window
from services.outcomes.observations.measures import MeasureTable
from shared.fhir.http import negotiate
from shared.fhir.operations import Renderer

# Chart format -> its media type, and back.
MEDIA_TYPES = {"png": "image/png", "svg": "image/svg+xml"}
FORMATS = {media: fmt for fmt, media in MEDIA_TYPES.items()}
# Chart name -> what draws it from its operation's Parameters in a format.
CHARTS: dict[str, Callable[..., bytes]] = {
    "patient": render_trajectory,
    "programme": render_programme,
    "window": render_window,
}


def chart_format(accept: str | None, format_param: str | None) -> str | None:
    """`png` or `svg` when the Accept header or `_format` asks for that image; None: JSON."""
    media = negotiate(accept, format_param, list(FORMATS))
    return FORMATS[media] if media else None


def renderers(chart: str, **options: Any) -> dict[str, Renderer]:
    """Media type -> renderer of one chart, for an Operation's `renderers` (options: measures)."""
    draw = CHARTS[chart]
    return {media: partial(draw, fmt=fmt, **options) for fmt, media in MEDIA_TYPES.items()}


def outcome_renderers(measures: MeasureTable) -> dict[str, dict[str, Renderer]]:
    """The renderers of `$outcomes`, `$programme-report` and `$window-evidence`."""
    return {
        "outcomes": renderers("patient", measures=measures),
        "programme-report": renderers("programme"),
        "window-evidence": renderers("window"),
    }
