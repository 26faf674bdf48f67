"""The dosing protocol file: what it holds, and a malformed file refused with a clear message."""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from services.scheduling.app import registry
from services.scheduling.dosing import protocol as protocol_module
from services.scheduling.dosing.protocol import (
    PROTOCOLS_FILE,
    dosing_protocols,
    load_protocols,
    parse_protocols,
)
from services.scheduling.dosing.protocol_parts import Coding, ProtocolFileError
from services.scheduling.dosing.window import Offsets

RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
SNOMED = "http://snomed.info/sct"
SHIPPED = json.loads(PROTOCOLS_FILE.read_text())


def test_the_shipped_protocols():
    table = dosing_protocols()
    assert table.version == SHIPPED["version"]
    assert set(table.protocols) == {
        "iv-racemic",
        "im-racemic",
        "sublingual-racemic",
        "sublingual-emdr-in-session",
        "intranasal-esketamine",
    }
    iv = table.protocols["iv-racemic"]
    assert (iv.route.code, iv.dose.unit, iv.dose.usual) == ("47625008", "mg/kg", 0.5)
    assert iv.administration_minutes == 40 and iv.minimum_interval_hours == 48
    assert iv.window == Offsets(2, 24, 72, 168)
    assert iv.monitoring.observation_hours == 2
    assert (iv.monitoring.hold_systolic_above, iv.monitoring.hold_diastolic_above) == (140, 90)
    assert table.protocols["im-racemic"].dose.max_mg == 60
    nasal = table.protocols["intranasal-esketamine"]
    assert (nasal.dose.min, nasal.dose.max, nasal.dose.multiple_of) == (28, 84, 28)
    assert [(p.from_week, p.per_week_max) for p in nasal.course] == [(1, 2), (5, 1), (9, 1)]
    assert table.protocols["sublingual-emdr-in-session"].window.start == 0
    assert iv.reference == f"iv-racemic|{table.version}"


def test_every_number_names_its_source():
    def check(node: Any, where: str, covered: bool = False) -> None:
        """A block's `source` covers the numbers in it and in the blocks inside it."""
        if isinstance(node, dict):
            covered = covered or isinstance(node.get("source"), str)
            numbers = [
                k
                for k, v in node.items()
                if isinstance(v, (int, float)) and not isinstance(v, bool)
            ]
            assert covered or not numbers, f"{where} has numbers {numbers} without a source"
            for key, value in node.items():
                check(value, f"{where}.{key}", covered)
        elif isinstance(node, list):
            for value in node:
                check(value, where, covered)

    check(SHIPPED, "file")
    intervals = [p["minimumIntervalHours"] for p in SHIPPED["protocols"].values()]
    # The 48 h minimum interval is the clinic's choice, and says so.
    assert all(i["clinicChoice"] is True and "clinic" in i["source"] for i in intervals)


def test_without_a_care_plan_code_and_route_pick_one_protocol():
    table = dosing_protocols()
    spravato = Coding(RXNORM, "2201625")
    assert table.matching(spravato, Coding(SNOMED, "46713006")).id == "intranasal-esketamine"
    assert table.matching(Coding(RXNORM, "238083"), Coding(SNOMED, "78421000")).id == "im-racemic"
    assert table.matching(spravato, Coding(SNOMED, "47625008")) is None
    assert table.matching(Coding(RXNORM, "6130"), Coding(SNOMED, "47625008")) is None


def _broken(change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    data = copy.deepcopy(SHIPPED)
    change(data)
    return data


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def change(data: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node = data
        for key in parents:
            node = node[key]
        node[last] = value

    return change


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (_set("window.optimalStartHours", 100), "window: the offsets must be ordered"),
        (
            _set(
                "protocols.iv-racemic.window",
                {"startHours": -1, "optimalStartHours": 1, "optimalEndHours": 2, "endHours": 3},
            ),
            "protocols.iv-racemic.window.startHours must be at least 0",
        ),
        (_set("protocols.iv-racemic.dose.usual", 2), "protocols.iv-racemic.dose: min <= usual"),
        (_set("protocols.iv-racemic.dose.unit", "g"), "protocols.iv-racemic.dose.unit"),
        (
            _set("protocols.im-racemic.dose.maxMg", "sixty"),
            "im-racemic.dose.maxMg must be a number",
        ),
        (
            _set("protocols.iv-racemic.route", {"code": "47625008"}),
            "iv-racemic.route needs a system",
        ),
        (
            _set("protocols.sublingual-emdr-in-session.matchWithoutCarePlan", True),
            "protocols sublingual-racemic and sublingual-emdr-in-session both match",
        ),
        (
            _set("protocols.im-racemic.route", {"system": SNOMED, "code": "47625008"}),
            "protocols iv-racemic and im-racemic both match",
        ),
        (_set("monitoring.bloodPressureHold.systolicAbove", 0), "systolicAbove must be above 0"),
        (_set("version", ""), "version must be a non-empty string"),
        (
            _set(
                "protocols.intranasal-esketamine.course.phases",
                [
                    {"fromWeek": 1, "toWeek": 4, "perWeekMin": 2, "perWeekMax": 2},
                    {"fromWeek": 3, "perWeekMin": 1, "perWeekMax": 1},
                ],
            ),
            "phases[1] overlaps",
        ),
        (_set("protocols.Bad Id", {}), "ids are lower-case"),
    ],
)
def test_a_malformed_file_is_refused_naming_the_part(
    change: Callable[[dict[str, Any]], None], message: str
):
    data = _broken(change)
    with pytest.raises(ProtocolFileError, match=re.escape(message)):
        parse_protocols(data)


def test_a_malformed_file_stops_the_service_at_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    broken = tmp_path / "dosing-protocols.json"
    broken.write_text(json.dumps(_broken(_set("window.endHours", 1))))
    with pytest.raises(ProtocolFileError, match=r"^dosing-protocols.json: window: "):
        load_protocols(broken)
    broken.write_text("{not json")
    with pytest.raises(ProtocolFileError, match=r"^dosing-protocols\.json: "):
        load_protocols(broken)
    monkeypatch.setattr(protocol_module, "PROTOCOLS_FILE", broken)
    dosing_protocols.cache_clear()
    try:
        with pytest.raises(ProtocolFileError):
            registry()
    finally:
        dosing_protocols.cache_clear()
