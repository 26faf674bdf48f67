"""The pure decisions of enrolment: consent in force, and the episode status it leads to."""

from __future__ import annotations

from datetime import datetime

import pytest

from services.intake.enrolment.consents import in_force, treatment_consent
from services.intake.enrolment.decision import status_after_consent
from tests.enrolment_support import consent

NOW = datetime(2026, 6, 1, 12, 0)


@pytest.mark.parametrize(
    ("current", "screened", "consented", "expected"),
    [
        # Cleared episodes (all clear, or reviewed eligible) follow the consent.
        ("waitlist", "waitlist", True, "active"),
        ("active", "waitlist", False, "waitlist"),
        ("waitlist", "onhold", True, "active"),  # reviewed eligible despite a relative one
        ("active", "onhold", False, "waitlist"),
        ("active", "active", True, "active"),
        ("waitlist", "waitlist", False, "waitlist"),
        # Losing consent always stops treatment; gaining it needs a screening on file with
        # no absolute contraindication under today's table.
        ("active", "cancelled", False, "waitlist"),
        ("waitlist", "cancelled", True, "waitlist"),
        ("waitlist", None, True, "waitlist"),
        ("active", None, False, "waitlist"),
        # A review's or screening's say is never undone by consent.
        ("onhold", "onhold", True, "onhold"),
        ("onhold", "onhold", False, "onhold"),
        ("cancelled", "onhold", True, "cancelled"),
        ("cancelled", "cancelled", True, "cancelled"),
        ("planned", None, True, "planned"),
        ("finished", "waitlist", True, "finished"),
    ],
)
def test_status_after_consent(current: str, screened: str | None, consented: bool, expected: str):
    assert status_after_consent(current, screened, consented) == expected


def test_a_consent_is_in_force_only_active_and_within_its_period():
    assert in_force(consent("p"), NOW)
    assert not in_force(consent("p", status="inactive"), NOW)
    assert not in_force(consent("p", status="draft"), NOW)
    assert not in_force(consent("p", period={"end": "2026-05-31"}), NOW)
    assert in_force(consent("p", period={"end": "2026-06-01"}), NOW)  # the whole day counts
    assert not in_force(consent("p", period={"start": "2026-06-02"}), NOW)
    assert in_force(consent("p", period={"start": "2026-01-01", "end": "2027-01-01"}), NOW)


def test_a_refusal_in_force_wins_and_research_does_not_count():
    permit, deny = consent("p"), consent("p", deny=True)
    assert treatment_consent([permit], NOW) is permit
    assert treatment_consent([permit, deny], NOW) is None
    assert treatment_consent([permit, {**deny, "status": "inactive"}], NOW) is permit
    assert treatment_consent([consent("p", scope="research")], NOW) is None
    assert treatment_consent([], NOW) is None
