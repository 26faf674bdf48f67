"""The plasticity window as computed: protocol offsets, tailoring, time zones."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from services.scheduling.dosing.protocol import dosing_protocols
from services.scheduling.dosing.window import (
    Offsets,
    Tailoring,
    compute_window,
    format_utc,
)

TABLE = dosing_protocols()
ENDED = datetime(2026, 3, 2, 10, 40, tzinfo=UTC)


def _window(protocol_id: str, ended: datetime = ENDED, tailoring: Tailoring | None = None):
    protocol = TABLE.protocols[protocol_id]
    return compute_window(protocol.window, protocol.reference, ended, tailoring)


def test_the_infusion_window_from_the_end_of_the_administration():
    window = _window("iv-racemic")
    assert {name: format_utc(at) for name, at in window.moments().items()} == {
        "windowStart": "2026-03-02T12:40:00Z",
        "optimalStart": "2026-03-03T10:40:00Z",
        "optimalEnd": "2026-03-05T10:40:00Z",
        "windowEnd": "2026-03-09T10:40:00Z",
    }
    assert window.protocol == f"iv-racemic|{TABLE.version}"


def test_the_in_session_protocol_opens_at_once():
    window = _window("sublingual-emdr-in-session")
    assert window.window_start == ENDED
    assert window.optimal_start == ENDED + timedelta(hours=24)


def test_a_local_time_is_returned_in_utc():
    paris = timezone(timedelta(hours=1))
    window = _window("iv-racemic", datetime(2026, 3, 2, 11, 40, tzinfo=paris))
    assert window.window_start == datetime(2026, 3, 2, 12, 40, tzinfo=UTC)
    assert format_utc(window.window_start) == "2026-03-02T12:40:00Z"


def test_a_naive_end_is_refused():
    with pytest.raises(ValueError, match="time zone"):
        _window("iv-racemic", datetime(2026, 3, 2, 10, 40))


def test_a_tailoring_replaces_only_the_offsets_it_names():
    tailoring = Tailoring({"optimalStart": 12, "windowEnd": 96}, "slow responder", "Practitioner/1")
    window = _window("iv-racemic", tailoring=tailoring)
    assert window.window_start == ENDED + timedelta(hours=2)
    assert window.optimal_start == ENDED + timedelta(hours=12)
    assert window.optimal_end == ENDED + timedelta(hours=72)
    assert window.window_end == ENDED + timedelta(hours=96)


@pytest.mark.parametrize(
    ("offsets", "message"),
    [
        ({"optimalStart": 80}, "must be ordered"),
        ({"windowEnd": 1}, "must be ordered"),
        ({"windowStart": -1}, "must not be before"),
        ({"later": 3}, "unknown offsets"),
    ],
)
def test_an_unordered_tailoring_is_refused(offsets: dict[str, float], message: str):
    with pytest.raises(ValueError, match=message):
        _window("iv-racemic", tailoring=Tailoring(offsets, "reason"))


def test_offsets_must_make_a_window():
    assert Offsets(0, 0, 0, 1).problem() is None
    assert Offsets(0, 0, 0, 0).problem() == "windowEnd must be after windowStart"
