"""Outcomes' settings: the shared ones plus the research export's key, the offset bins of the
window evidence and the clinician pages' sign-in."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr, field_validator

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

    # The clinician pages (/app/) sign clinicians in at AUTH_ISSUER with OpenID Connect
    # (code + PKCE) as this confidential client; empty: the pages say sign-in is not set up.
    web_client_id: str = ""
    # The client's secret (client_secret_post), given as is or as a file holding it.
    web_client_secret: str = ""
    web_client_secret_file: str = ""
    # The public base URL of the pages, for the redirect URI `<base>/app/callback`; empty:
    # http://<host>:<port>, right only when browsers connect directly.
    web_base_url: str = ""
    # What the pages ask for: the API is called with the clinician's own token, so these
    # scopes and the token's practice claim decide what the pages show.
    web_scope: str = "openid fhirUser profile user/*.rs"
    # A session ends after this long, or when the clinician's access token expires if sooner.
    web_session_minutes: float = Field(default=480.0, gt=0)

    def web_secret(self) -> str:
        """The web client's secret, from the setting or its file."""
        if self.web_client_secret:
            return self.web_client_secret
        if self.web_client_secret_file:
            return Path(self.web_client_secret_file).read_text().strip()
        return ""

    def web_base(self) -> str:
        """The public base URL of the pages, without a trailing slash."""
        return (self.web_base_url or f"http://{self.host}:{self.port}").rstrip("/")

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
