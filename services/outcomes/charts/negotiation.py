"""Which chart a request asks for, and the renderers the outcome operations offer."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

from services.outcomes.observations.measures import MeasureTable
from shared.fhir.http import negotiate
from shared.fhir.operations import Renderer

# Chart format -> its media type, and back.
MEDIA_TYPES = {"png": "image/png", "svg": "image/svg+xml"}
FORMATS = {media: fmt for fmt, media in MEDIA_TYPES.items()}


# matplotlib is imported when a chart is first drawn: it added about a second to the start of
# every outcomes process.
def _render_trajectory(*args: Any, **kwargs: Any) -> bytes:
    from services.outcomes.charts.trajectory import render_trajectory

    return render_trajectory(*args, **kwargs)


def _render_programme(*args: Any, **kwargs: Any) -> bytes:
    from services.outcomes.charts.programme import render_programme

    return render_programme(*args, **kwargs)


def _render_window(*args: Any, **kwargs: Any) -> bytes:
    from services.outcomes.charts.window import render_window

    return render_window(*args, **kwargs)


# Chart name -> what draws it from its operation's Parameters in a format.
CHARTS: dict[str, Callable[..., bytes]] = {
    "patient": _render_trajectory,
    "programme": _render_programme,
    "window": _render_window,
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
