"""`python -m services.outcomes chart {patient ID|programme|window} --url BASE --out FILE`.

Fetches the operation's Parameters from a running outcomes service and draws them here.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path
from typing import Any

import httpx

from services.outcomes.charts.negotiation import CHARTS
from services.outcomes.observations.measures import outcome_measures

DEFAULT_URL = "http://localhost:8003/fhir"


class ChartError(Exception):
    """Why no chart was written (said on stderr)."""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The chart command's arguments."""
    parser = argparse.ArgumentParser(
        prog="python -m services.outcomes chart",
        description="Draw a patient's trajectory ($outcomes), the programme ($programme-report) "
        "or the window evidence ($window-evidence) as PNG or SVG.",
    )
    parser.add_argument("chart", choices=list(CHARTS), help="which chart")
    parser.add_argument("patient", nargs="?", help="the Patient id (for `patient`)")
    parser.add_argument("--url", default=DEFAULT_URL, help=f"outcomes' FHIR base ({DEFAULT_URL})")
    parser.add_argument("--out", type=Path, required=True, help="FILE.png or FILE.svg")
    parser.add_argument(
        "--token", default=os.environ.get("TOKEN"), help="bearer token (default: $TOKEN)"
    )
    parser.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="an operation input, e.g. --param protocol=ketamine-im (repeatable)",
    )
    args = parser.parse_args(argv)
    if (args.chart == "patient") != (args.patient is not None):
        parser.error("`patient` takes a Patient id; `programme` and `window` take none")
    if args.out.suffix.lower() not in (".png", ".svg"):
        parser.error("--out must end in .png or .svg")
    if any("=" not in p for p in args.param):
        parser.error("--param takes NAME=VALUE")
    return args


def main(
    argv: list[str] | None = None, *, transport: httpx.AsyncBaseTransport | None = None
) -> int:
    """Write the chart; 1 with the reason on stderr when the service refuses or is not there."""
    args = parse_args(argv)
    try:
        image = asyncio.run(chart(args, transport))
    except ChartError as exc:
        print(f"chart: {exc}", file=sys.stderr)
        return 1
    try:
        args.out.write_bytes(image)
    except OSError as exc:
        print(f"chart: cannot write {args.out}: {exc.strerror}", file=sys.stderr)
        return 1
    print(f"{args.out}: {len(image)} bytes")
    return 0


async def chart(args: argparse.Namespace, transport: httpx.AsyncBaseTransport | None) -> bytes:
    """The chart's bytes, from the Parameters the service answers."""
    path = {
        "patient": f"Patient/{args.patient}/$outcomes",
        "programme": "$programme-report",
        "window": "$window-evidence",
    }[args.chart]
    headers = {"Accept": "application/fhir+json"}
    if args.token:
        headers["Authorization"] = f"Bearer {args.token}"
    params = [tuple(p.split("=", 1)) for p in args.param]
    url = f"{args.url.rstrip('/')}/{path}"
    async with httpx.AsyncClient(transport=transport, headers=headers, timeout=120) as client:
        try:
            response = await client.get(url, params=params)
        except httpx.TransportError as exc:
            raise ChartError(f"{args.url} does not answer ({type(exc).__name__})") from None
    body = _json(response)
    if response.status_code != 200:
        raise ChartError(f"{url} answered {response.status_code}: {_diagnostics(body)}")
    if not isinstance(body, dict) or body.get("resourceType") != "Parameters":
        raise ChartError(f"{url} did not answer a Parameters resource")
    fmt = args.out.suffix.lower().lstrip(".")
    draw = CHARTS[args.chart]
    if args.chart == "patient":
        return draw(body, fmt, measures=outcome_measures())
    return draw(body, fmt)


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _diagnostics(body: Any) -> str:
    """What an OperationOutcome says (its issues' diagnostics), or that there was none."""
    if isinstance(body, dict) and body.get("resourceType") == "OperationOutcome":
        said = [
            str(issue.get("diagnostics"))
            for issue in body.get("issue") or []
            if isinstance(issue, dict) and issue.get("diagnostics")
        ]
        if said:
            return "; ".join(said)
    return "no OperationOutcome"
