"""What security costs a read and a search: token checks and the practice filter.

`python -m bench.auth` loads Observations (BENCH_AUTH_OBSERVATIONS, 100,000 by default) of
2,000 patients spread over 50 practices into one outcomes database on SQLite, then times
in-process reads and searches with, in the same run: security off (the baseline), a
programme-wide token and a one-practice token, each pre-verified (the same token again, as
clients send it) and verified afresh on every request. Prints a table with the ratio to
the baseline (also bench/results/auth.md and a chart, auth.png).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx
from fastapi import FastAPI

from bench.load import load, replicate_patients
from services.outcomes.app import OutcomesSettings, create_app
from tests.auth_support import auth_settings, mint

OBSERVATIONS = int(os.environ.get("BENCH_AUTH_OBSERVATIONS", "100000"))
PATIENTS = 2000
PRACTICES = 50
REQUESTS = int(os.environ.get("BENCH_AUTH_REQUESTS", "400"))
RESULTS = Path(__file__).resolve().parent / "results"
TARGET_RATIO = 1.10
TARGET_SEARCH_P99_MS = 20.0


def _practice(patient: int) -> str:
    return f"Organization/practice-{patient % PRACTICES:02d}"


def _patients(url: str) -> None:
    """The replicated Patients, each managed by one of the practices."""
    replicate_patients(
        url,
        PATIENTS,
        lambda n: {"resourceType": "Patient", "managingOrganization": {"reference": _practice(n)}},
    )


def _app(url: str, **settings: object) -> FastAPI:
    return create_app(
        OutcomesSettings(
            database_url=url,
            migrate_on_start=False,
            resync_on_start=False,
            reconcile_interval_s=0,
            **settings,
        )
    )


async def _time(
    client: httpx.AsyncClient, paths: list[str], headers: Callable[[], dict[str, str]]
) -> list[float]:
    timings = []
    for path in paths:
        sent = headers()
        started = time.perf_counter()
        response = await client.get(path, headers=sent)
        timings.append((time.perf_counter() - started) * 1000)
        if response.status_code != 200:
            raise RuntimeError(f"{path}: {response.status_code} {response.text[:200]}")
    return timings


def _p(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * pct / 100))]


async def _measure(url: str, keys: list) -> dict[str, dict[str, list[float]]]:
    rng = random.Random(5)
    # A practice's own patients: the reads and searches a practice token may make.
    home = 7
    mine = [k for k in keys if int(k.patient.split("-")[1]) % PRACTICES == home]
    reads = [f"/Observation/{rng.choice(mine).id}" for _ in range(REQUESTS)]
    searches = [
        f"/Observation?subject={k.patient}&code={k.code}&_count=20"
        for k in (rng.choice(mine) for _ in range(REQUESTS))
    ]
    staff = mint(scope="system/*.rs", lifetime=3600)
    practice = mint(scope="system/*.rs", practice=f"Organization/practice-{home:02d}")
    fresh = [
        mint(scope="system/*.rs", practice=f"Organization/practice-{home:02d}")
        for _ in range(2 * REQUESTS + 20)
    ]
    fresh_iter = iter(fresh)
    cases: dict[str, tuple[FastAPI, Callable[[], dict[str, str]]]] = {}
    off = _app(url, auth_disabled=True)
    on = _app(url, **auth_settings())
    cases["security off (baseline)"] = (off, dict)
    cases["programme-wide token, pre-verified"] = (
        on,
        lambda: {"Authorization": f"Bearer {staff}"},
    )
    cases["practice token, pre-verified"] = (on, lambda: {"Authorization": f"Bearer {practice}"})
    cases["practice token, verified each request"] = (
        on,
        lambda: {"Authorization": f"Bearer {next(fresh_iter)}"},
    )
    results: dict[str, dict[str, list[float]]] = {}
    async with contextlib.AsyncExitStack() as running:
        # With the lifespan, as a service runs: planner statistics, the audit drainer.
        for app in (off, on):
            await running.enter_async_context(app.router.lifespan_context(app))
        await _cells(cases, reads, searches, results)
    return results


async def _cells(
    cases: dict[str, tuple[FastAPI, Callable[[], dict[str, str]]]],
    reads: list[str],
    searches: list[str],
    results: dict[str, dict[str, list[float]]],
) -> None:
    for label, (app, headers) in cases.items():
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://bench/fhir"
        ) as client:
            await _time(client, reads[:20], headers)  # warm caches and pools
            results[label] = {
                "read": await _time(client, reads, headers),
                "search": await _time(client, searches, headers),
            }


def _table(results: dict[str, dict[str, list[float]]]) -> str:
    base = results["security off (baseline)"]
    lines = [
        f"Security cost, outcomes on SQLite, {OBSERVATIONS:,} Observations, {PATIENTS:,} "
        f"patients over {PRACTICES} practices, {REQUESTS} requests per cell",
        "",
        "| caller | read p50 | read p99 | search p50 | search p99 | read p50 ratio "
        "| search p50 ratio |",
        "|---|---|---|---|---|---|---|",
    ]
    for label, cell in results.items():
        read50, search50 = _p(cell["read"], 50), _p(cell["search"], 50)
        lines.append(
            f"| {label} | {read50:.2f} ms | {_p(cell['read'], 99):.2f} ms | {search50:.2f} ms "
            f"| {_p(cell['search'], 99):.2f} ms | {read50 / _p(base['read'], 50):.2f} "
            f"| {search50 / _p(base['search'], 50):.2f} |"
        )
    worst = results["practice token, verified each request"]
    ratio = max(_p(worst[k], 50) / _p(base[k], 50) for k in ("read", "search"))
    p99 = max(_p(results[k]["search"], 99) for k in results if "practice" in k)
    lines += [
        "",
        f"- verification + practice filter, p50 vs baseline: x{ratio:.2f} "
        f"(target <= x{TARGET_RATIO:.2f}): **{'PASS' if ratio <= TARGET_RATIO else 'MISS'}**",
        f"- practice search p99: {p99:.1f} ms (target < {TARGET_SEARCH_P99_MS:.0f} ms): "
        f"**{'PASS' if p99 < TARGET_SEARCH_P99_MS else 'MISS'}**",
        "- every cell includes the audit trail (one spooled record per request).",
    ]
    return "\n".join(lines)


def _chart(results: dict[str, dict[str, list[float]]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = list(results)
    fig, ax = plt.subplots(figsize=(9, 4))
    width = 0.35
    for offset, kind in ((-width / 2, "read"), (width / 2, "search")):
        ax.bar(
            [i + offset for i in range(len(labels))],
            [statistics.median(results[label][kind]) for label in labels],
            width,
            label=f"{kind} p50",
        )
    ax.set_xticks(range(len(labels)), [label.replace(", ", "\n") for label in labels], fontsize=8)
    ax.set_ylabel("ms")
    ax.set_title("What security costs a request (p50)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        url = f"sqlite:///{folder}/outcomes.db"
        keys, seconds = load(url, "observations", OBSERVATIONS, patients=PATIENTS)
        _patients(url)
        print(f"loaded {OBSERVATIONS:,} Observations in {seconds:.0f} s", flush=True)
        results = asyncio.run(_measure(url, keys))
    table = _table(results)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "auth.md").write_text(table + "\n")
    _chart(results, RESULTS / "auth.png")
    print(table)


if __name__ == "__main__":
    main()
