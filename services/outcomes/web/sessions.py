"""Signed-in clinicians: server-side sessions behind a random cookie id.

Kept in memory, for one process: a restart signs everyone out, and several workers or replicas
would each need the clinician to sign in (use one worker, or sticky sessions, for the pages).
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field

COOKIE = "kemdr_session"
LOGIN_COOKIE = "kemdr_login"
COOKIE_PATH = "/app"
_MAX_SESSIONS = 10_000


@dataclass(frozen=True)
class WebSession:
    """One signed-in clinician: the access token the pages call the API with, and who."""

    access_token: str
    name: str
    fhir_user: str | None
    expires: float
    id: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    # Sent back by the sign-out form: a page of another site cannot sign anyone out.
    csrf: str = field(default_factory=lambda: secrets.token_urlsafe(24))


class SessionStore:
    """Sessions by id; an expired one is gone."""

    def __init__(self) -> None:
        self._sessions: dict[str, WebSession] = {}

    def add(self, session: WebSession) -> None:
        now = time.time()
        if len(self._sessions) >= _MAX_SESSIONS:
            self._sessions = {k: v for k, v in self._sessions.items() if v.expires > now}
        while len(self._sessions) >= _MAX_SESSIONS:
            self._sessions.pop(next(iter(self._sessions)))  # the oldest
        self._sessions[session.id] = session

    def get(self, session_id: str | None) -> WebSession | None:
        if not session_id:
            return None
        session = self._sessions.get(session_id)
        if session is not None and session.expires <= time.time():
            del self._sessions[session_id]
            return None
        return session

    def drop(self, session_id: str) -> None:
        self._sessions.pop(session_id, None)
