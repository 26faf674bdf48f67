"""`python -m bench.run`: the outcomes service's benchmark on SQLite and PostgreSQL.

Loads N Observations (100,000 by default; BENCH_OBSERVATIONS or --observations to scale down),
then measures against real uvicorn processes: creates/s against a bare FastAPI baseline that only
parses, validates and echoes, read and search latency, and the same under load. Writes
bench/results/latest.{md,json,png}. Misses are reported, not failed: the exit status is non-zero
only when something went wrong (a non-2xx answer, a server that would not start).
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlencode

import orjson
import psycopg
from sqlalchemy.exc import SQLAlchemyError

from bench.data import Key, observation, search_date
from bench.driver import Phase, Request, drive
from bench.load import load, replicate_patients
from bench.report import Backend, Results, write
from bench.servers import baseline_server, outcomes_service
from tooling.postgres import PostgresCluster
from tooling.service_process import HTTPProcess, ServerError

RESULTS = Path(__file__).resolve().parent / "results"
BACKENDS = ("sqlite", "postgres")


def _env_int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--observations",
        type=int,
        default=_env_int("BENCH_OBSERVATIONS", 100_000),
        help="Observations stored before measuring (env BENCH_OBSERVATIONS; default 100000)",
    )
    parser.add_argument(
        "--seconds",
        type=float,
        default=float(os.environ.get("BENCH_SECONDS", 15)),
        help="measured seconds per phase (env BENCH_SECONDS; default 15)",
    )
    parser.add_argument(
        "--warmup",
        type=float,
        default=float(os.environ.get("BENCH_WARMUP", 2)),
        help="unmeasured seconds before each phase (env BENCH_WARMUP; default 2)",
    )
    parser.add_argument(
        "--concurrency",
        type=int,
        default=_env_int("BENCH_CONCURRENCY", 16),
        help="concurrent clients for creates and the loaded runs (env BENCH_CONCURRENCY)",
    )
    parser.add_argument(
        "--backends",
        default=os.environ.get("BENCH_BACKENDS", ",".join(BACKENDS)),
        help="comma-separated: sqlite,postgres (env BENCH_BACKENDS)",
    )
    parser.add_argument(
        "--client",
        choices=("lean", "httpx"),
        default=os.environ.get("BENCH_CLIENT", "lean"),
        help="load client: lean keep-alive HTTP/1.1 (default) or httpx (env BENCH_CLIENT)",
    )
    parser.add_argument(
        "--creates-only",
        action="store_true",
        default=os.environ.get("BENCH_CREATES_ONLY", "") not in ("", "0"),
        help="measure creates only, no read or search phases (env BENCH_CREATES_ONLY=1)",
    )
    parser.add_argument(
        "--pg-workers",
        type=int,
        default=_env_int("BENCH_PG_WORKERS", 2),
        help="also measure PostgreSQL creates with this many uvicorn workers (0 or 1: not; "
        "env BENCH_PG_WORKERS; default 2)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=Path(os.environ.get("BENCH_OUT", RESULTS)),
        help="folder for latest.md, latest.json and latest.png (env BENCH_OUT)",
    )
    args = parser.parse_args(argv)
    args.backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    unknown = set(args.backends) - set(BACKENDS)
    if unknown or not args.backends or args.observations < 1:
        parser.error(f"backends must be among {BACKENDS}; observations at least 1")
    return args


class Workload:
    """The requests of every phase, reproducible from fixed seeds."""

    def __init__(self, keys: list[Key], patients: int) -> None:
        self.keys = keys
        rng = random.Random(2)
        self.bodies = [orjson.dumps(observation(rng, patients)) for _ in range(1000)]
        self.rng = random.Random(3)

    def create(self, i: int) -> Request:
        return "POST", "/fhir/Observation", self.bodies[i % len(self.bodies)]

    def read(self, _i: int) -> Request:
        return "GET", f"/fhir/Observation/{self.rng.choice(self.keys).id}", None

    def search(self, _i: int) -> Request:
        key = self.rng.choice(self.keys)
        query = urlencode(
            {
                "patient": key.patient.removeprefix("Patient/"),
                "code": f"http://loinc.org|{key.code}",
                "date": f"ge{search_date(self.rng)}",
                "_count": "50",
            }
        )
        return "GET", f"/fhir/Observation?{query}", None


def _phase(
    server: HTTPProcess,
    name: str,
    make: Callable[[int], Request],
    args: argparse.Namespace,
    concurrency: int,
    count_hits: bool = False,
) -> Phase:
    print(f"  {server.label}: {name} (c={concurrency}, {args.seconds:.0f} s)...", file=sys.stderr)
    phase = drive(
        server.url,
        name,
        make,
        concurrency=concurrency,
        seconds=args.seconds,
        warmup=args.warmup,
        server_pid=server.pid,
        count_hits=count_hits,
        client=args.client,
    )
    if not server.alive():
        code = server.process.returncode if server.process else None
        raise ServerError(
            f"{server.label} died (exit status {code}) during {name}:\n{server.log_tail()}"
        )
    print(
        f"    {phase.rate:,.0f}/s, p50 {phase.percentile(50):.1f} ms, "
        f"p99 {phase.percentile(99):.1f} ms, errors {phase.error_count}",
        file=sys.stderr,
    )
    return phase


def measure_baseline(results: Results, workload: Workload, args: argparse.Namespace) -> None:
    server = baseline_server().start()
    try:
        run = len(results.baseline) + 1
        results.baseline.append(
            _phase(server, f"create #{run}", workload.create, args, args.concurrency)
        )
    finally:
        server.stop()


def measure_service(
    backend: Backend, url: str, workload: Workload, args: argparse.Namespace
) -> None:
    server = outcomes_service(url, workers=backend.workers).start()
    c = args.concurrency
    try:
        p = backend.phases
        p["create"] = _phase(server, f"{backend.label} create", workload.create, args, c)
        if args.creates_only or backend.workers > 1:
            return
        p["read"] = _phase(server, f"{backend.name} read", workload.read, args, 1)
        p["read-loaded"] = _phase(server, f"{backend.name} read", workload.read, args, c)
        p["search"] = _phase(server, f"{backend.name} search", workload.search, args, 1, True)
        p["search-loaded"] = _phase(server, f"{backend.name} search", workload.search, args, c)
    finally:
        server.stop()


def _revision() -> str:
    """The commit measured, and whether the work tree had changes on top of it."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            cwd=RESULTS.parent,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=RESULTS.parent,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown (no git)"
    return f"{commit} with uncommitted changes" if dirty else commit


def _header(args: argparse.Namespace, patients: int, pg_version: str | None) -> list[str]:
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    load1, load5, _ = os.getloadavg()
    lines = [
        f"- Scale: {args.observations:,} Observations stored ({patients:,} patients, "
        f"2024-2025), {args.seconds:.0f} s per phase after {args.warmup:.0f} s warm-up; {now}",
        "- Search: `Observation?patient=X&code=http://loinc.org|Y&date=geZ&_count=50` "
        "(X, Y from a stored Observation, Z a random day of the two years)",
        f"- Machine: {os.cpu_count()} cores (shared), load average {load1:.1f} / {load5:.1f} "
        f"at start; Python {platform.python_version()}; one uvicorn worker per server "
        f"(unless a row says otherwise), "
        f"log level warning; load from this machine with the {args.client} client, "
        f"concurrency {args.concurrency} for creates and the loaded columns",
        f"- Code: {_revision()}",
        f"- SQLite {sqlite3.sqlite_version} (WAL, synchronous=NORMAL)",
    ]
    if pg_version:
        lines.append(
            f"- PostgreSQL {pg_version}, throwaway cluster with fsync=off and "
            "full_page_writes=off (tooling/postgres.py): commits cost less than in production"
        )
    return lines


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    patients = max(1, min(2000, args.observations // 50))
    workdir = Path(tempfile.mkdtemp(prefix="kemdr-bench-"))
    cluster: PostgresCluster | None = None
    urls: dict[str, str] = {}
    pg_version = None
    try:
        if "postgres" in args.backends:
            print("starting PostgreSQL...", file=sys.stderr)
            cluster = PostgresCluster().start()
            urls["postgres"] = cluster.create_database("bench")
            with psycopg.connect(cluster.dsn("bench")) as conn:
                row = conn.execute("SHOW server_version").fetchone()
                pg_version = str(row[0]).split()[0] if row else "?"
        if "sqlite" in args.backends:
            urls["sqlite"] = f"sqlite:///{workdir / 'outcomes.db'}"
        results = Results(_header(args, patients, pg_version), args.concurrency, args.observations)
        keys: list[Key] = []
        for name in args.backends:
            backend = Backend(name)
            keys, backend.load_seconds = load(
                urls[name], name, args.observations, patients=patients
            )
            # The patients the creates name, known to outcomes as intake's events would make them.
            replicate_patients(urls[name], patients)
            results.backends.append(backend)
        if "postgres" in args.backends and args.pg_workers > 1:
            # Creates only, on the database loaded above: how a service scales with cores.
            results.backends.append(Backend("postgres", workers=args.pg_workers))
        workload = Workload(keys, patients)
        measure_baseline(results, workload, args)
        for backend in results.backends:
            measure_service(backend, urls[backend.name], workload, args)
        measure_baseline(results, workload, args)
        text = write(results, args.out)
        print(text)
        print(
            f"written to {args.out}/latest.md, latest.json and latest.png "
            f"({time.monotonic() - started:.0f} s in all)",
            file=sys.stderr,
        )
    except (
        ServerError,
        RuntimeError,
        OSError,
        subprocess.SubprocessError,
        psycopg.Error,
        SQLAlchemyError,
    ) as exc:
        print(f"benchmark failed: {exc}", file=sys.stderr)
        return 2
    finally:
        if cluster is not None:
            cluster.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    errors = results.error_count()
    if errors:
        print(f"benchmark saw {errors} failed requests (see Details)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
