"""Outcomes' settings: the shared ones plus the research export's key and the offset bins of
the window evidence."""

from __future__ import annotations

from pydantic import SecretStr, field_validator

from services.outcomes.programme.bins import DEFAULT_EDGES, parse_edges
from shared.settings import settings_class

_OutcomesBase = settings_class("outcomes", 8003)
# A study id is only as private as its key: a short one could be guessed from the patient ids.
RESEARCH_KEY_MIN_LENGTH = 32


class OutcomesSettings(_OutcomesBase):  # type: ignore[misc,valid-type]
    """`OUTCOMES_*` settings."""

    # OUTCOMES_RESEARCH_KEY: the secret the research export's study ids are keyed with (an
    # HMAC of the patient id). Unset: `$research-export` says it is not configured. Keep it
    # for as long as one study lasts: a new key gives every patient a new study id.
    research_key: SecretStr | None = None

    @field_validator("research_key")
    @classmethod
    def _long_enough(cls, key: SecretStr | None) -> SecretStr | None:
        if key is not None and len(key.get_secret_value()) < RESEARCH_KEY_MIN_LENGTH:
            raise ValueError(
                f"the research key must be at least {RESEARCH_KEY_MIN_LENGTH} characters "
                "(e.g. `openssl rand -hex 32`)"
            )
        return key

    # The edges, in hours after a dose ended, between the offset bins `$window-evidence`
    # compares (OUTCOMES_WINDOW_BINS_H): 0-2 h, 2-24 h, 24-72 h, 72 h-7 d, over 7 d.
    window_bins_h: str = DEFAULT_EDGES

    @field_validator("window_bins_h")
    @classmethod
    def _rising_hours(cls, text: str) -> str:
        # Checked here so that bad bins stop the start, not the first request.
        parse_edges(text)
        return text
