"""`python -m bench.outcomes`: outcomes' programme report, patient summaries and clinician page
over a programme of 1,000,000 score Observations of 5,000 patients, on PostgreSQL.

Loads the seeded programme of bench/outcomes_data.py in bulk (bench/outcomes_load.py: resources,
versions, search index and timeline rows, checked first against the store's own writes), starts
the outcomes service as deployed, and times: `$programme-report` (target under 1 s) beside one
plain pass over the scores table; `Patient/{id}/$outcomes` p50/p99 over random patients (target
p99 under 50 ms) beside a plain Observation search of the same patients; the clinician page's
first contentful paint in Chromium (target under 1 s, bench/outcomes_page.py). A missed target
prints the plans of the statements that took the time (PostgreSQL's auto_explain). Writes
bench/results/outcomes.{md,json}. BENCH_OUTCOMES_OBSERVATIONS, _PATIENTS, _SUMMARIES, _REPORTS
and _BACKENDS (postgres; postgres,sqlite adds SQLite) size it.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import psycopg

from bench.client import HEADERS
from bench.outcomes_data import patient_id
from bench.outcomes_explain import digest, slow_plans, with_auto_explain
from bench.outcomes_load import Loaded, load_programme
from bench.outcomes_page import PageTiming, first_paint
from bench.servers import outcomes_service
from tooling.postgres import PostgresCluster
from tooling.service_process import ServerError

RESULTS = Path(__file__).resolve().parent / "results"
REPORT_TARGET_MS = 1000.0
SUMMARY_P99_TARGET_MS = 50.0
PAINT_TARGET_MS = 1000.0
LABELS = {"postgres": "PostgreSQL", "sqlite": "SQLite"}
# One pass over every score: the least any report over them costs (the report's baseline).
SCAN = "SELECT count(*), avg(value) FROM outcome_scores"


def _env(name: str, default: str) -> str:
    return os.environ.get(f"BENCH_OUTCOMES_{name}", default)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.outcomes", description=__doc__)
    add = parser.add_argument
    add("--observations", type=int, default=int(_env("OBSERVATIONS", "1000000")))
    add("--patients", type=int, default=int(_env("PATIENTS", "5000")))
    add("--summaries", type=int, default=int(_env("SUMMARIES", "500")))
    add("--reports", type=int, default=int(_env("REPORTS", "5")))
    add("--backends", default=_env("BACKENDS", "postgres"))
    add("--database-url", default=_env("DATABASE_URL", ""), help="an already loaded database")
    add("--pg-log", default=_env("PG_LOG", ""), help="its server log (for auto_explain)")
    add("--out", type=Path, default=Path(_env("OUT", str(RESULTS))))
    args = parser.parse_args(argv)
    args.backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    if set(args.backends) - set(LABELS) or args.patients < 1 or args.observations < 1:
        parser.error(f"backends among {sorted(LABELS)}; patients and observations at least 1")
    return args


@dataclass
class Timing:
    """Milliseconds of repeated runs of one request or statement."""

    what: str
    runs: list[float] = field(default_factory=list)
    note: str = ""
    failures: list[str] = field(default_factory=list)  # answers other than 200, in brief
    sizes: list[int] = field(default_factory=list)  # response bytes

    @property
    def mean_kb(self) -> float:
        return sum(self.sizes) / len(self.sizes) / 1024 if self.sizes else float("nan")

    def request(self, client: httpx.Client, path: str) -> None:
        """Time one GET; a refusal (e.g. 400 too-costly at the statement time-out) counts
        with its time, and is kept to be shown."""
        started = time.perf_counter()
        response = client.get(path)
        self.runs.append((time.perf_counter() - started) * 1000)
        self.sizes.append(len(response.content))
        if response.status_code != 200:
            issue = (_issue(response) or response.text)[:160]
            self.failures.append(f"{response.status_code} {issue}")

    def pct(self, p: float) -> float:
        if not self.runs:
            return float("nan")
        ordered = sorted(self.runs)
        return ordered[min(len(ordered) - 1, int(len(ordered) * p / 100))]

    @property
    def median(self) -> float:
        return statistics.median(self.runs) if self.runs else float("nan")


@dataclass
class BackendResult:
    name: str
    loaded: Loaded | None = None
    scan: Timing | None = None
    report: Timing | None = None
    search: Timing | None = None
    summary: Timing | None = None
    paint: PageTiming | None = None
    explained: list[str] = field(default_factory=list)


def _timed(call: Callable[[], Any]) -> float:
    started = time.perf_counter()
    call()
    return (time.perf_counter() - started) * 1000


def _issue(response: httpx.Response) -> str:
    """The OperationOutcome's first diagnostics, if the answer is one."""
    try:
        issues = response.json().get("issue") or [{}]
    except ValueError:
        return ""
    return f"{issues[0].get('code', '')}: {issues[0].get('diagnostics', '')}"


def _get(client: httpx.Client, path: str) -> httpx.Response:
    response = client.get(path)
    if response.status_code != 200:
        raise RuntimeError(f"GET {path}: {response.status_code} {response.text[:300]}")
    return response


def measure_scan(dsn: str | None, sqlite_path: str | None, runs: int) -> Timing:
    """The baseline: one plain aggregate over the whole scores table."""
    timing = Timing(f"`{SCAN}`")
    if dsn is not None:
        with psycopg.connect(dsn) as conn:
            conn.execute(SCAN).fetchone()
            timing.runs = [_timed(lambda: conn.execute(SCAN).fetchone()) for _ in range(runs)]
    elif sqlite_path is not None:
        import sqlite3

        with sqlite3.connect(sqlite_path) as conn:
            conn.execute(SCAN).fetchone()
            timing.runs = [_timed(lambda: conn.execute(SCAN).fetchone()) for _ in range(runs)]
    return timing


def measure_report(client: httpx.Client, runs: int) -> Timing:
    timing = Timing("`GET /fhir/$programme-report` (no filters)")
    probe = client.get("/fhir/$programme-report")
    if probe.status_code == 404:
        timing.note = f"not measured: the report answers {probe.status_code} (not merged?)"
        return timing
    for _ in range(runs):
        timing.request(client, "/fhir/$programme-report")
    return timing


def measure_patients(client: httpx.Client, patients: int, count: int) -> tuple[Timing, Timing]:
    """`$outcomes` of `count` random patients one at a time, and the baseline: a plain
    Observation search of the same patients."""
    rng = random.Random(5)
    chosen = [patient_id(rng.randrange(patients)) for _ in range(count)]
    summary = Timing("`GET /fhir/Patient/{id}/$outcomes`")
    search = Timing("`GET /fhir/Observation?patient={id}&_count=50`")
    probe = client.get(f"/fhir/Patient/{chosen[0]}/$outcomes")
    for pid in chosen[:20]:  # warm pools and caches
        _get(client, f"/fhir/Observation?patient={quote(pid)}&_count=50")
    for pid in chosen:
        search.request(client, f"/fhir/Observation?patient={pid}&_count=50")
    if probe.status_code == 404:
        summary.note = f"not measured: `$outcomes` answers {probe.status_code} (not merged?)"
        return summary, search
    for pid in chosen[:20]:
        client.get(f"/fhir/Patient/{pid}/$outcomes")
    for pid in chosen:
        summary.request(client, f"/fhir/Patient/{pid}/$outcomes")
    return summary, search


def _pg_database(url: str) -> tuple[str, str]:
    """(libpq dsn, database name) of a SQLAlchemy PostgreSQL url."""
    dsn = url.replace("postgresql+psycopg://", "postgresql://")
    return dsn, dsn.rsplit("/", 1)[1].split("?")[0]


def measure_backend(
    result: BackendResult, url: str, args: argparse.Namespace, pg_log: Path | None
) -> None:
    """Time the report, the summaries and the page on one loaded database."""
    dsn = _pg_database(url)[0] if result.name == "postgres" else None
    sqlite_path = url.removeprefix("sqlite:///") if result.name == "sqlite" else None
    result.scan = measure_scan(dsn, sqlite_path, max(5, args.reports))
    server = outcomes_service(url).start()
    try:
        with httpx.Client(base_url=server.url, headers=HEADERS, timeout=120) as client:
            print(f"  {LABELS[result.name]}: $programme-report...", file=sys.stderr)
            result.report = measure_report(client, args.reports)
            print(f"  {LABELS[result.name]}: patient summaries...", file=sys.stderr)
            result.summary, result.search = measure_patients(client, args.patients, args.summaries)
    finally:
        server.stop()
    print(f"  {LABELS[result.name]}: clinician page...", file=sys.stderr)
    result.paint = first_paint(url, args.patients)
    if dsn is not None and pg_log is not None:
        _explain_misses(result, url, dsn, pg_log)


def _explain_misses(result: BackendResult, url: str, dsn: str, pg_log: Path) -> None:
    """Run a missed request once more with auto_explain on; keep the slowest plans."""
    misses: list[tuple[str, float]] = []
    report = result.report
    if report and report.runs and (report.median >= REPORT_TARGET_MS or report.failures):
        misses.append(("/fhir/$programme-report", 200.0))
    summary = result.summary
    if summary and summary.runs and (summary.pct(99) >= SUMMARY_P99_TARGET_MS or summary.failures):
        misses += [(f"/fhir/Patient/{patient_id(n)}/$outcomes", 10.0) for n in range(3)]
    if not misses:
        return
    admin, name = _pg_database(url)
    for path, min_ms in misses:
        offset = pg_log.stat().st_size
        with with_auto_explain(admin, name, min_ms):
            server = outcomes_service(url)
            # A statement cancelled at the time-out logs no plan: let this one run out.
            server.env["OUTCOMES_STATEMENT_TIMEOUT_MS"] = "300000"
            server.start()
            try:
                with httpx.Client(base_url=server.url, headers=HEADERS, timeout=300) as client:
                    client.get(path)  # a refusal at the time-out still logs its plan
            finally:
                server.stop()
        plans = slow_plans(pg_log, offset)
        if "$outcomes" in path:
            # Its statements are small: which ones passed the threshold tells more than plans.
            found = "; ".join(digest(plan) for plan in plans[:3]) or "none"
            result.explained.append(f"{path}: statements over {min_ms:g} ms: {found}")
        else:
            result.explained += [f"{path}: {plan}" for plan in plans[:2]]


def _ms(value: float) -> str:
    return "n/a" if value != value else f"{value:,.1f} ms"


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def rows(result: BackendResult) -> list[list[str]]:
    """Table rows: measure, value, target, verdict, baseline, ratio."""
    label = LABELS[result.name]
    out = []
    report, scan = result.report, result.scan
    if report is not None and scan is not None:
        if report.runs:
            out.append(
                [
                    f"{label}: {report.what}, median of {len(report.runs)} "
                    f"(slowest {_ms(max(report.runs))})",
                    _ms(report.median),
                    "< 1 s",
                    _verdict(report.median < REPORT_TARGET_MS and not report.failures),
                    f"{scan.what}: {_ms(scan.median)}",
                    f"{report.median / scan.median:.1f}",
                ]
            )
        else:
            out.append([f"{label}: {report.what}", report.note, "< 1 s", "-", "", ""])
    summary, search = result.summary, result.search
    if summary is not None and search is not None:
        base = (
            f"{search.what} p99: {_ms(search.pct(99))} (p50 {_ms(search.pct(50))}; "
            f"{search.mean_kb:,.0f} KB)"
        )
        if summary.runs:
            out.append(
                [
                    f"{label}: {summary.what} p99 over {len(summary.runs)} patients "
                    f"(p50 {_ms(summary.pct(50))}; {summary.mean_kb:,.0f} KB on average)",
                    _ms(summary.pct(99)),
                    "p99 < 50 ms",
                    _verdict(summary.pct(99) < SUMMARY_P99_TARGET_MS and not summary.failures),
                    base,
                    f"{summary.pct(99) / search.pct(99):.1f}",
                ]
            )
        else:
            out.append([f"{label}: {summary.what}", summary.note, "p99 < 50 ms", "-", base, ""])
    paint = result.paint
    if paint is not None:
        if paint.ms is not None:
            base = f"{paint.baseline_what}: {_ms(paint.baseline_ms or float('nan'))}"
            ratio = f"{paint.ms / paint.baseline_ms:.1f}" if paint.baseline_ms else ""
            out.append(
                [
                    f"{label}: clinician page first contentful paint ({paint.what}; "
                    f"slowest {_ms(max(paint.runs))})",
                    _ms(paint.ms),
                    "< 1 s",
                    _verdict(paint.ms < PAINT_TARGET_MS),
                    base,
                    ratio,
                ]
            )
        else:
            out.append([f"{label}: clinician page first paint", paint.note, "< 1 s", "-", "", ""])
    return out


def markdown(results: list[BackendResult], args: argparse.Namespace, header: list[str]) -> str:
    lines = ["# Outcomes benchmark", "", *header, ""]
    lines += ["| measure | value | target | verdict | baseline (same run) | ratio |"]
    lines += ["|---|--:|---|---|---|--:|"]
    for result in results:
        lines += ["| " + " | ".join(row) + " |" for row in rows(result)]
    for result in results:
        for timing in (result.report, result.summary):
            if timing is not None and timing.failures:
                lines.append(
                    f"- {LABELS[result.name]}: {len(timing.failures)} of {len(timing.runs)} "
                    f"{timing.what} refused (timed all the same), e.g. {timing.failures[0]}"
                )
    lines += ["", "## Load", ""]
    for result in results:
        loaded = result.loaded
        if loaded is None:
            lines.append(f"- {LABELS[result.name]}: loaded before this run (--database-url)")
            continue
        counts = ", ".join(f"{n:,} {t}" for t, n in loaded.resources.most_common())
        rate = loaded.resources["Observation"] / loaded.seconds if loaded.seconds else 0
        lines.append(
            f"- {LABELS[result.name]}: {counts} in {loaded.seconds:,.0f} s "
            f"({rate:,.0f} Observations/s; COPY on PostgreSQL, then VACUUM ANALYZE; "
            f"executemany on SQLite); the first patient's resources written both through the "
            f"store and in bulk gave the same {loaded.checked_rows:,} rows"
        )
    for result in results:
        if result.explained:
            lines += ["", f"## Where the time goes ({LABELS[result.name]}, auto_explain)", ""]
            for plan in result.explained:
                lines += ["```", plan, "```"]
    return "\n".join(lines) + "\n"


def as_json(result: BackendResult) -> dict[str, Any]:
    """The measured numbers (Counter would not survive dataclasses.asdict)."""
    out: dict[str, Any] = {"backend": result.name, "explained": result.explained}
    if result.loaded is not None:
        out["loaded"] = {**asdict(result.loaded), "resources": dict(result.loaded.resources)}
    for name in ("scan", "report", "search", "summary"):
        timing = getattr(result, name)
        if timing is not None:
            out[name] = {
                "what": timing.what,
                "note": timing.note,
                "runs": len(timing.runs),
                "p50_ms": round(timing.pct(50), 2) if timing.runs else None,
                "p99_ms": round(timing.pct(99), 2) if timing.runs else None,
                "median_ms": round(timing.median, 2) if timing.runs else None,
                "failures": timing.failures,
            }
    if result.paint is not None:
        out["paint"] = asdict(result.paint)
    return out


def _header(
    args: argparse.Namespace, pg_version: str | None, at_start: tuple[float, float]
) -> list[str]:
    load1, load5 = at_start
    lines = [
        f"- Scale: {args.observations:,} score Observations of {args.patients:,} patients "
        f"(seeded, bench/outcomes_data.py), {args.summaries} patient summaries, "
        f"{args.reports} reports; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
        f"- Machine: {os.cpu_count()} cores (shared), load average {load1:.1f} / {load5:.1f} "
        "at start; one uvicorn worker, requests one at a time with the programme-wide staff "
        "token (audited)",
    ]
    if pg_version:
        lines.append(
            f"- PostgreSQL {pg_version}, throwaway cluster with fsync=off (tooling/postgres.py)"
        )
    return lines


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    at_start = os.getloadavg()[:2]
    workdir = Path(tempfile.mkdtemp(prefix="kemdr-bench-outcomes-"))
    cluster: PostgresCluster | None = None
    results: list[BackendResult] = []
    pg_version = None
    try:
        for name in args.backends:
            result = BackendResult(name)
            pg_log: Path | None = Path(args.pg_log) if args.pg_log else None
            if name == "postgres" and args.database_url:
                url = args.database_url
            elif name == "postgres":
                print("starting PostgreSQL...", file=sys.stderr)
                cluster = PostgresCluster().start()
                url, pg_log = cluster.create_database("bench"), cluster.root / "log"
            else:
                url = f"sqlite:///{workdir / 'outcomes.db'}"
            if name == "postgres":
                with psycopg.connect(_pg_database(url)[0]) as conn:
                    row = conn.execute("SHOW server_version").fetchone()
                    pg_version = str(row[0]).split()[0] if row else "?"
            if not (name == "postgres" and args.database_url):
                result.loaded = load_programme(
                    url, name, patients=args.patients, observations=args.observations
                )
            measure_backend(result, url, args, pg_log)
            results.append(result)
        load1, load5, _ = os.getloadavg()
        header = _header(args, pg_version, at_start)
        header.append(
            f"- Load average at the end: {load1:.1f} / {load5:.1f} (above 2, the cores are "
            "shared and every figure, the baselines too, is slower than on a quiet machine)"
        )
        text = markdown(results, args, header)
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "outcomes.md").write_text(text)
        (args.out / "outcomes.json").write_text(
            json.dumps([as_json(r) for r in results], indent=2, default=str) + "\n"
        )
        print(text)
    except (ServerError, RuntimeError, OSError, psycopg.Error, httpx.HTTPError) as exc:
        print(f"outcomes benchmark failed: {exc}", file=sys.stderr)
        return 2
    finally:
        if cluster is not None:
            cluster.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
