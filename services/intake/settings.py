"""Intake's settings: the shared ones plus the EHRs `Patient/$import` may fetch from."""

from __future__ import annotations

from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from shared.settings import settings_class


class EhrSource(BaseModel):
    """How intake authenticates to one allowed EHR FHIR base."""

    model_config = ConfigDict(extra="forbid")

    # none; bearer: a static token read from `token_env` or `token_file` at each import (so a
    # rotated token is picked up); smart: SMART Backend Services client credentials.
    auth: Literal["none", "bearer", "smart"] = "none"
    token_env: str = ""
    token_file: str = ""
    client_id: str = ""
    key_file: str = ""
    issuer: str = ""
    token_endpoint: str = ""
    scope: str = "system/Patient.rs"

    @model_validator(mode="after")
    def _complete(self) -> EhrSource:
        if self.auth == "bearer" and bool(self.token_env) == bool(self.token_file):
            raise ValueError("a bearer source needs exactly one of token_env and token_file")
        if self.auth == "smart" and not (
            self.client_id and self.key_file and (self.issuer or self.token_endpoint)
        ):
            raise ValueError(
                "a smart source needs client_id, key_file and issuer or token_endpoint"
            )
        return self


def normalise_base(url: str) -> str:
    """A FHIR base as the allow-list compares it: no trailing slash."""
    return url.strip().rstrip("/")


_IntakeBase = settings_class("intake", 8001)


class IntakeSettings(_IntakeBase):  # type: ignore[misc,valid-type]
    """`INTAKE_*` settings."""

    # Allowed EHR FHIR bases (JSON object: base URL -> EhrSource). `$import` fetches from
    # these and nothing else: a URL a caller sends is only ever compared with them.
    ehr_sources: dict[str, EhrSource] = Field(default_factory=dict)
    # Connect and read time-out of each request to an EHR.
    ehr_timeout_s: float = Field(default=10.0, gt=0)
    # Tries per import on 429 and 5xx answers (1: no retry).
    ehr_max_attempts: int = Field(default=3, ge=1, le=10)
    # The whole fetch, retries and waits included, ends within this.
    ehr_deadline_s: float = Field(default=30.0, gt=0)
    # First back-off between tries (doubled each time; a longer Retry-After wins).
    ehr_backoff_s: float = Field(default=0.5, ge=0)
    # A larger answer from an EHR is refused rather than read.
    ehr_max_response_bytes: int = Field(default=5 * 1024 * 1024, ge=1024)

    @field_validator("ehr_sources")
    @classmethod
    def _bases(cls, sources: dict[str, EhrSource]) -> dict[str, EhrSource]:
        checked: dict[str, EhrSource] = {}
        for url, source in sources.items():
            parts = urlsplit(url.strip())
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError(f"EHR source {url!r} is not an http(s) URL")
            if parts.query or parts.fragment or parts.username or parts.password:
                raise ValueError(f"EHR source {url!r} must be a bare FHIR base URL")
            checked[normalise_base(url)] = source
        return checked
