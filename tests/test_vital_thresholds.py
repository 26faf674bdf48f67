"""The hold and rescue thresholds, pure: numbers from the protocol file, '>' for "above"."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from services.scheduling.holds.issues import monitoring
from services.scheduling.holds.vitals import Reading, hold_problem, reading_of, rescue_problems
from tests.holds_support import blood_pressure, heart_rate

WATCH = monitoring()
AT = datetime(2026, 3, 2, 11, 0, tzinfo=UTC)


def bp(
    systolic: float | None, diastolic: float | None, minutes: int = 0, ref: str = "o"
) -> Reading:
    return Reading(f"Observation/{ref}", AT + timedelta(minutes=minutes), systolic, diastolic)


def test_the_numbers_come_from_the_protocol_file():
    assert (WATCH.hold_systolic_above, WATCH.hold_diastolic_above) == (140, 90)
    stricter = replace(WATCH, hold_systolic_above=130)
    assert hold_problem(bp(135, 80), stricter) is not None
    assert hold_problem(bp(135, 80), WATCH) is None


def test_the_hold_is_strictly_above_either_number():
    assert hold_problem(bp(140, 90), WATCH) is None
    assert hold_problem(bp(141, 70), WATCH) is not None
    assert hold_problem(bp(None, 91), WATCH) is not None  # a single diastolic Observation
    assert "140/90 mmHg" in (hold_problem(bp(150, 95), WATCH) or "")


def test_readings_from_the_panel_and_single_observations():
    panel = reading_of({**blood_pressure("p", 150, 95, "2026-03-02T08:00:00Z"), "id": "x"})
    assert panel is not None and (panel.systolic, panel.diastolic) == (150, 95)
    pulse = reading_of({**heart_rate("p", 99, "2026-03-02T08:00:00+01:00"), "id": "y"})
    assert pulse is not None and pulse.heart_rate == 99
    assert pulse.taken == datetime(2026, 3, 2, 7, tzinfo=UTC)
    draft = {**blood_pressure("p", 150, 95, "2026-03-02T08:00:00Z"), "status": "preliminary"}
    assert reading_of(draft) is None
    assert reading_of({**blood_pressure("p", 150, 95, "2026-03-02"), "id": "d"}) is None


def test_single_and_repeated_rescue_thresholds():
    assert rescue_problems(bp(200, 120), [], WATCH) == []  # not above
    (single,) = rescue_problems(bp(201, 100), [], WATCH)
    assert single.readings == (bp(201, 100),)
    assert rescue_problems(bp(180, 100, 4), [bp(181, 100)], WATCH) == []  # 4 min apart
    (twice,) = rescue_problems(bp(180, 100, 5, "b"), [bp(100, 110, 0, "a")], WATCH)
    assert [r.reference for r in twice.readings] == ["Observation/a", "Observation/b"]


def test_heart_rate_above_for_the_whole_span():
    def hr(rate: float, minutes: int) -> Reading:
        return Reading(f"Observation/h{minutes}", AT + timedelta(minutes=minutes), heart_rate=rate)

    assert rescue_problems(hr(121, 5), [hr(121, 0)], WATCH)
    assert rescue_problems(hr(121, 5), [hr(121, 0), hr(120, 2)], WATCH) == []
    assert rescue_problems(hr(121, 4), [hr(125, 0)], WATCH) == []
