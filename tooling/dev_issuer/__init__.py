"""A SMART authorization server for development and tests (never production): Backend Services
(client credentials) for systems, and OpenID Connect sign-in (code + PKCE) for clinicians.

Kept free of heavy imports: `make token` and `make run` read the constants below.
"""

from __future__ import annotations

import os
from pathlib import Path

# The one place the dev issuer's port is chosen (the services use 8001-8003, Tansu 9092).
DEFAULT_PORT = 8009
DEFAULT_DIR = "var/dev-auth"
DEV_CLIENT = "kemdr-dev"
SERVICE_CLIENTS = {name: f"kemdr-{name}" for name in ("intake", "scheduling", "outcomes")}
# The confidential client of the outcomes clinician pages (authorization code + PKCE).
WEB_CLIENT = "kemdr-outcomes-web"
# The practices the dev users belong to (a demo or a test creates these Organizations).
DEV_PRACTICES = ("Organization/practice-a", "Organization/practice-b")
# Every dev user's password: for a development issuer only, documented in the README.
DEV_PASSWORD = "kemdr-dev"
DEFAULT_AUDIENCES = (
    "http://127.0.0.1:8001/fhir",
    "http://127.0.0.1:8002/fhir",
    "http://127.0.0.1:8003/fhir",
)


def dev_port() -> int:
    """The port `make run` serves the issuer on (DEVRUN_ISSUER_PORT moves it, as in tests)."""
    return int(os.environ.get("DEVRUN_ISSUER_PORT", DEFAULT_PORT))


def dev_url() -> str:
    """The issuer URL `make run` serves and `make token` asks."""
    return f"http://127.0.0.1:{dev_port()}"


def dev_dir() -> Path:
    """Where `make run` keeps the issuer's keys and clients (DEVRUN_AUTH_DIR moves it)."""
    return Path(os.environ.get("DEVRUN_AUTH_DIR", DEFAULT_DIR))


def client_key_file(directory: Path, client_id: str) -> Path:
    """The private key file of a client the issuer registered itself."""
    return directory / f"{client_id}.pem"


def client_secret_file(directory: Path, client_id: str) -> Path:
    """The secret file of a confidential web client the issuer registered itself."""
    return directory / f"{client_id}.secret"


def web_redirect_uri(base_url: str) -> str:
    """The sign-in callback of the clinician pages served at `base_url`."""
    return f"{base_url.rstrip('/')}/app/callback"
