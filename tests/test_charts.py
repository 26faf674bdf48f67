"""The charts: drawn from the operations' Parameters, PNG and SVG, and the chart command."""

from __future__ import annotations

import io
import threading
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image

from services.outcomes.charts.cli import main as chart_command
from services.outcomes.charts.negotiation import chart_format, outcome_renderers
from services.outcomes.charts.programme import render_programme
from services.outcomes.charts.trajectory import render_trajectory
from services.outcomes.charts.window import render_window
from services.outcomes.observations.measures import outcome_measures
from tests.charts_support import patient_outcomes, programme_report, window_evidence

SVG = "{http://www.w3.org/2000/svg}"
MEASURES = outcome_measures()


def trajectory(data: dict[str, Any], fmt: str) -> bytes:
    return render_trajectory(data, fmt, measures=MEASURES)


def png_pixels(image: bytes) -> np.ndarray:
    """The PNG's pixels, after checking it is one."""
    assert image.startswith(b"\x89PNG\r\n\x1a\n")
    with Image.open(io.BytesIO(image)) as picture:
        picture.load()
        return np.asarray(picture.convert("L"), dtype=float)


def svg_texts(image: bytes) -> str:
    """Every text the SVG shows, joined (the XML must parse)."""
    root = ET.fromstring(image)
    assert root.tag == f"{SVG}svg"
    return " ".join("".join(t.itertext()) for t in root.iter(f"{SVG}text"))


CHARTS: list[tuple[str, Callable[[str], bytes], list[str]]] = [
    (
        "trajectory",
        lambda fmt: trajectory(patient_outcomes(), fmt),
        # The title, each panel, the band labels, the verdicts and the sessions' offsets.
        [
            "Patient/p1: outcomes over time",
            "PHQ-9 total score",
            "MADRS total score",
            "PCL-5 total score",
            "SUDS rating",
            "Moderately severe",
            "Remission",
            "probable PTSD",
            "response",
            "+26 h",
            "plasticity window",
        ],
    ),
    (
        "programme",
        lambda fmt: render_programme(programme_report(), fmt),
        [
            "Programme outcomes",
            "n = 24",
            "response 54 % [35 to 72 %]",
            "remission 25 %",
            "g = \u22121.42 [\u22121.98 to \u22120.86]",
            "g needs at least 3 patients",
            "72 % of EMDR sessions inside the optimal window",
        ],
    ),
    (
        "window",
        lambda fmt: render_window(window_evidence(), fmt),
        [
            "Which timing works",
            "24-72 h",
            "25 sessions",
            "n = 22",
            "The data cannot tell the bins apart yet.",
            "About 40 more sessions",
        ],
    ),
]


@pytest.mark.parametrize(("name", "draw", "texts"), CHARTS, ids=[c[0] for c in CHARTS])
def test_a_chart_is_a_drawn_png_and_an_svg_with_its_words(
    name: str, draw: Callable[[str], bytes], texts: list[str]
) -> None:
    pixels = png_pixels(draw("png"))
    height, width = pixels.shape
    assert width >= 1000 and height >= 450
    # Drawn, not blank: dark ink on white, in a fair share of the picture.
    assert pixels.std() > 20
    assert (pixels < 128).mean() > 0.003
    shown = svg_texts(draw("svg"))
    for text in texts:
        assert text in shown, text


def test_the_same_data_gives_the_same_bytes() -> None:
    """No timestamps or random ids inside: a cache or a diff sees only real changes."""
    assert trajectory(patient_outcomes(), "svg") == trajectory(patient_outcomes(), "svg")
    assert trajectory(patient_outcomes(), "png") == trajectory(patient_outcomes(), "png")


def test_scores_absent_the_chart_says_so() -> None:
    nothing = {"resourceType": "Parameters", "parameter": []}
    assert "No scores yet" in svg_texts(trajectory(nothing, "svg"))
    assert png_pixels(trajectory(nothing, "png")).std() > 5
    # Doses and sessions but no score yet: the course is drawn, and the message shown.
    shown = svg_texts(trajectory(patient_outcomes(scores=False), "svg"))
    assert "No scores yet" in shown
    assert "+26 h" in shown


def test_empty_reports_say_why_there_is_no_chart() -> None:
    assert "No patient has a baseline" in svg_texts(
        render_programme(programme_report(empty=True), "svg")
    )
    assert "No EMDR session" in svg_texts(render_window(window_evidence(sessions=False), "svg"))


def test_odd_parts_are_left_out_rather_than_failing() -> None:
    """A time without a day, a value that is not a number, an instrument outcomes does not know."""
    data = patient_outcomes()
    data["parameter"] += [
        {"name": "event", "part": [{"name": "type", "valueCode": "score"}]},
        {
            "name": "event",
            "part": [
                {"name": "type", "valueCode": "score"},
                {"name": "time", "valueDateTime": "2026-03"},
                {"name": "value", "valueDecimal": 3},
            ],
        },
        {
            "name": "event",
            "part": [
                {"name": "type", "valueCode": "score"},
                {"name": "time", "valueDateTime": "2026-03-04T10:00:00+02:00"},
                {"name": "instrument", "valueCoding": {"system": "urn:x", "code": "bdi"}},
                {"name": "value", "valueDecimal": 12},
            ],
        },
    ]
    assert "bdi" in svg_texts(trajectory(data, "svg"))


def test_the_best_bin_is_marked_only_when_the_evidence_names_one() -> None:
    assert "best" not in svg_texts(render_window(window_evidence(), "svg")).split()
    shown = svg_texts(render_window(window_evidence(best="24-72 h"), "svg"))
    assert shown.split().count("best") == 2  # in each panel
    assert "Sessions 24-72 h after the dose reduced SUDS most." in shown


def test_unknown_format_is_refused() -> None:
    with pytest.raises(ValueError, match="png or svg"):
        trajectory(patient_outcomes(), "gif")


def test_charts_drawn_in_several_threads_at_once_are_all_whole() -> None:
    """The API draws in worker threads: matplotlib's shared state must not tangle them."""
    results: list[bytes] = []
    errors: list[BaseException] = []

    def draw() -> None:
        try:
            results.append(render_window(window_evidence(), "png"))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=draw) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert len(set(results)) == 1


@pytest.mark.parametrize(
    ("accept", "format_param", "wanted"),
    [
        (None, None, None),
        ("application/fhir+json", None, None),
        ("*/*", None, None),
        ("image/png", None, "png"),
        ("image/svg+xml", None, "svg"),
        ("image/png, application/fhir+json", None, "png"),
        ("application/fhir+json, image/png", None, None),
        ("application/json;q=0.5, image/png", None, "png"),
        ("image/png;q=0.4, application/fhir+json", None, None),
        ("image/png;q=0", None, None),
        ("image/*", None, "png"),
        ("image/*, image/svg+xml", None, "svg"),
        ("image/png;q=0.2, image/svg+xml;q=0.9, */*;q=0.1", None, "svg"),
        ("text/html", None, None),
        # A browser's <img>: explicit image types before its */*.
        ("image/avif,image/webp,image/apng,image/svg+xml,image/*,*/*;q=0.8", None, "svg"),
        # _format decides, whatever the Accept says.
        ("application/fhir+json", "png", "png"),
        ("image/png", "svg", "svg"),
        ("image/png", "image/svg+xml", "svg"),
        (None, "IMAGE/PNG", "png"),
        ("image/png", "json", None),
        (None, "gif", None),
    ],
)
def test_which_chart_a_request_asks_for(
    accept: str | None, format_param: str | None, wanted: str | None
) -> None:
    assert chart_format(accept, format_param) == wanted


def test_each_outcome_operation_offers_png_and_svg() -> None:
    offered = outcome_renderers(MEASURES)
    assert set(offered) == {"outcomes", "programme-report", "window-evidence"}
    for renderers in offered.values():
        assert set(renderers) == {"image/png", "image/svg+xml"}
    assert offered["outcomes"]["image/png"](patient_outcomes()).startswith(b"\x89PNG")


# ---- the chart command ------------------------------------------------------------------------
def answering(
    body: dict[str, Any], status: int = 200, seen: list[httpx.Request] | None = None
) -> httpx.MockTransport:
    def handle(request: httpx.Request) -> httpx.Response:
        if seen is not None:
            seen.append(request)
        return httpx.Response(status, json=body, headers={"Content-Type": "application/fhir+json"})

    return httpx.MockTransport(handle)


def test_the_command_writes_a_patients_chart(tmp_path: Path) -> None:
    seen: list[httpx.Request] = []
    out = tmp_path / "p1.png"
    argv = ["patient", "p1", "--url", "http://fhir.test/fhir/", "--out", str(out), "--token", "t0"]
    assert chart_command(argv, transport=answering(patient_outcomes(), seen=seen)) == 0
    assert png_pixels(out.read_bytes()).std() > 20
    (request,) = seen
    assert str(request.url) == "http://fhir.test/fhir/Patient/p1/$outcomes"
    assert request.headers["authorization"] == "Bearer t0"
    assert request.headers["accept"] == "application/fhir+json"


def test_the_command_passes_the_operation_inputs_and_writes_svg(tmp_path: Path) -> None:
    seen: list[httpx.Request] = []
    out = tmp_path / "programme.svg"
    argv = ["programme", "--url", "http://fhir.test/fhir", "--out", str(out)]
    argv += ["--param", "protocol=ketamine-im", "--param", "period=ge2026-01-01"]
    assert chart_command(argv, transport=answering(programme_report(), seen=seen)) == 0
    assert "Programme outcomes" in svg_texts(out.read_bytes())
    assert seen[0].url.path == "/fhir/$programme-report"
    assert seen[0].url.params.multi_items() == [
        ("protocol", "ketamine-im"),
        ("period", "ge2026-01-01"),
    ]
    assert "authorization" not in seen[0].headers

    window = tmp_path / "window.svg"
    argv = ["window", "--url", "http://fhir.test/fhir", "--out", str(window)]
    assert chart_command(argv, transport=answering(window_evidence())) == 0
    assert "Which timing works" in svg_texts(window.read_bytes())


def test_the_command_says_why_the_service_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    outcome = {
        "resourceType": "OperationOutcome",
        "issue": [
            {"severity": "error", "code": "not-found", "diagnostics": "Patient/p9 is not known"}
        ],
    }
    out = tmp_path / "p9.png"
    argv = ["patient", "p9", "--url", "http://fhir.test/fhir", "--out", str(out)]
    assert chart_command(argv, transport=answering(outcome, status=404)) == 1
    assert "404: Patient/p9 is not known" in capsys.readouterr().err
    assert not out.exists()
    # An answer that is not Parameters is no chart either.
    assert chart_command(argv, transport=answering({"resourceType": "Bundle"})) == 1
    assert "did not answer a Parameters" in capsys.readouterr().err


def test_the_command_says_when_the_service_does_not_answer(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    argv = ["window", "--url", "http://fhir.test/fhir", "--out", str(tmp_path / "w.png")]
    assert chart_command(argv, transport=httpx.MockTransport(refuse)) == 1
    assert "http://fhir.test/fhir does not answer" in capsys.readouterr().err
    argv = ["window", "--url", "http://fhir.test/fhir", "--out", str(tmp_path / "no" / "w.png")]
    assert chart_command(argv, transport=answering(window_evidence())) == 1
    assert "cannot write" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv",
    [
        ["patient", "--out", "x.png"],  # no patient id
        ["window", "p1", "--out", "x.png"],  # an id where none is taken
        ["window", "--out", "x.gif"],
        ["programme", "--out", "x.png", "--param", "protocol"],
        ["everything", "--out", "x.png"],
    ],
)
def test_the_command_refuses_bad_arguments(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        chart_command(argv, transport=answering(window_evidence()))
    assert exit_.value.code == 2
