"""Study ids: a keyed hash of the patient id, the same in every export made with one key."""

from __future__ import annotations

import hashlib
import hmac

# 64 bits: no collision to expect among a programme's patients, short enough to read.
STUDY_ID_HEX = 16


def study_id(key: bytes, patient_id: str) -> str:
    """HMAC-SHA256 of the patient id under the research key, as 16 hex digits."""
    return hmac.new(key, patient_id.encode(), hashlib.sha256).hexdigest()[:STUDY_ID_HEX]
