"""The programme's session types (issue 10), a CodeSystem kept as a file in protocols/."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

SESSION_TYPES_FILE = Path(__file__).resolve().parent / "protocols" / "session-types.json"


def session_type_system(canonical_base: str) -> str:
    """The CodeSystem's canonical url under the programme's canonical base."""
    return f"{canonical_base.rstrip('/')}/CodeSystem/session-type"


def session_types(canonical_base: str) -> dict[str, Any]:
    """The session-type CodeSystem, its `url` under `canonical_base` (settings)."""
    code_system: dict[str, Any] = json.loads(SESSION_TYPES_FILE.read_text(encoding="utf-8"))
    code_system["url"] = session_type_system(canonical_base)
    return code_system


def session_type_codes(canonical_base: str) -> list[str]:
    """The codes the CodeSystem defines, in its order."""
    return [concept["code"] for concept in session_types(canonical_base)["concept"]]
