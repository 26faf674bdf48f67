"""Outcomes' settings: the shared ones plus the offset bins of the window evidence."""

from __future__ import annotations

from pydantic import field_validator

from services.outcomes.programme.bins import DEFAULT_EDGES, parse_edges
from shared.settings import settings_class

_OutcomesBase = settings_class("outcomes", 8003)


class OutcomesSettings(_OutcomesBase):  # type: ignore[misc,valid-type]
    """`OUTCOMES_*` settings."""

    # The edges, in hours after a dose ended, between the offset bins `$window-evidence`
    # compares (OUTCOMES_WINDOW_BINS_H): 0-2 h, 2-24 h, 24-72 h, 72 h-7 d, over 7 d.
    window_bins_h: str = DEFAULT_EDGES

    @field_validator("window_bins_h")
    @classmethod
    def _rising_hours(cls, text: str) -> str:
        # Checked here so that bad bins stop the start, not the first request.
        parse_edges(text)
        return text
