"""`make demo` / `python -m tooling.demo --patients 200 --seed 7`: load the seeded cohort into
the services `make run` started (their ports and issuer as `make run` has them)."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import httpx

from shared.auth.client_credentials import ClientCredentials
from shared.auth.jwk import load_private_key
from tooling.demo.clinic import PSYCHIATRISTS, schedules
from tooling.demo.codes import DEFAULT_BASE
from tooling.demo.cohort import ANCHOR, Settings, generate, latest, offset_bins
from tooling.demo.loader import Loader, LoadError, Report
from tooling.demo.progress import ProgressBar
from tooling.dev_issuer import DEV_CLIENT, client_key_file, dev_dir, dev_url
from tooling.devrun import SERVICES

SCOPE = "system/*.cruds"
# The psychiatrist whose token loads the cohort ($review needs a Practitioner as fhirUser).
CLINICIAN = f"Practitioner/{PSYCHIATRISTS[0][0]}"


def service_bases() -> dict[str, str]:
    """Each service's FHIR base where `make run` serves it (`<NAME>_PORT` moves one)."""
    return {
        name: f"http://127.0.0.1:{int(os.environ.get(f'{name.upper()}_PORT', port))}/fhir"
        for name, port in SERVICES
    }


def settings_from(args: argparse.Namespace) -> Settings:
    """The cohort's settings: the arguments, and the clinic's zone and canonical base from
    the same environment variables the services read."""
    zone = ZoneInfo(os.environ.get("SCHEDULING_CLINIC_TIME_ZONE", "Europe/Amsterdam"))
    base = os.environ.get("INTAKE_CANONICAL_BASE", DEFAULT_BASE).rstrip("/")
    return Settings(
        patients=args.patients, seed=args.seed, anchor=args.anchor, zone=zone, base=base
    )


def summary(report: Report) -> str:
    by_type: dict[str, int] = {}
    for (service, res_type), count in sorted(report.written.items()):
        by_type[f"{service} {res_type}"] = count
    shown = ", ".join(f"{key} {count}" for key, count in by_type.items())
    return (
        f"{report.patients} patients in {report.seconds:.0f} s "
        f"({report.skipped} loaded already): {shown or 'nothing written'}"
    )


async def _open_calendar(loader: Loader, today: date) -> None:
    """Slots for the next four weeks in every schedule (a second run skips taken starts)."""
    end = date.fromordinal(today.toordinal() + 27)
    for schedule_id, minutes in schedules():
        body = {
            "resourceType": "Parameters",
            "parameter": [
                {"name": "start", "valueDate": today.isoformat()},
                {"name": "end", "valueDate": end.isoformat()},
                {"name": "slotMinutes", "valuePositiveInt": minutes},
            ],
        }
        path = f"/Schedule/{schedule_id}/$generate-slots"
        await loader.request("scheduling", "POST", path, json=body, expect=(200,))


async def run(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    cohort = generate(settings)
    last = latest(cohort)
    if last > datetime.now(UTC):
        print(f"The cohort runs until {last:%Y-%m-%d}: give an earlier --anchor", file=sys.stderr)
        return 2
    bins = ", ".join(f"{label} {n}" for label, n in offset_bins(cohort).items())
    print(f"Cohort of seed {settings.seed}: {len(cohort.puts())} resources; EMDR by offset: {bins}")
    key_file = client_key_file(dev_dir(), DEV_CLIENT)
    if not key_file.exists():
        print(f"{key_file} does not exist: start `make run` first", file=sys.stderr)
        return 1
    auth = ClientCredentials(
        DEV_CLIENT,
        load_private_key(key_file),
        issuer=dev_url(),
        scope=SCOPE,
        params={"practice": "*", "fhir_user": CLINICIAN},
    )
    bases = service_bases()
    timeout = httpx.Timeout(60.0, connect=5.0)
    limits = httpx.Limits(max_connections=args.concurrency * 2)
    clients = {
        name: httpx.AsyncClient(base_url=base, auth=auth, timeout=timeout, limits=limits)
        for name, base in bases.items()
    }
    try:
        for name, client in clients.items():
            try:
                (await client.get("/metadata")).raise_for_status()
            except httpx.HTTPError:
                print(
                    f"{name} does not answer at {bases[name]}: is `make run` going?",
                    file=sys.stderr,
                )
                return 1
        loader = Loader(
            clients,
            concurrency=args.concurrency,
            wait_s=args.wait,
            progress=ProgressBar("Loading"),
        )
        try:
            await loader.clinic(cohort)
            await _open_calendar(loader, datetime.now(settings.zone).date())
            report = await loader.patients(cohort)
        except LoadError as exc:
            print(f"\nThe load stopped: {exc}", file=sys.stderr)
            return 1
    finally:
        for client in clients.values():
            await client.aclose()
    print(summary(report))
    outcomes = bases["outcomes"].removesuffix("/fhir")
    print(f"Clinician page: {outcomes}/app/")
    return 0


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m tooling.demo", description=__doc__)
    parser.add_argument("--patients", type=int, default=200)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--anchor",
        type=date.fromisoformat,
        default=ANCHOR,
        help=f"the first referral's date (default {ANCHOR}); the cohort spans about a year",
    )
    parser.add_argument("--concurrency", type=int, default=6, help="patients loaded at once")
    parser.add_argument("--wait", type=float, default=60.0, help="seconds an event may take")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Generate the cohort and load it; 1 with the reason when the load stops."""
    args = parser().parse_args(argv)
    if args.patients < 1:
        print("--patients must be at least 1", file=sys.stderr)
        return 2
    return asyncio.run(run(args))
