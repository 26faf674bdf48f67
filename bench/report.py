"""The results: a Markdown table with PASS/MISS per target, a JSON copy and a PNG bar chart."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.driver import Phase

# creates/s vs the baseline, one worker (issue 7: 35 % on PostgreSQL, 45 % on SQLite)
CREATE_SHARE_TARGETS = {"postgres": 0.35, "sqlite": 0.45}
SEARCH_P99_TARGET_MS = 20.0
LABELS = {"sqlite": "SQLite", "postgres": "PostgreSQL"}


@dataclass
class Backend:
    name: str
    load_seconds: float = 0.0
    phases: dict[str, Phase] = field(default_factory=dict)
    workers: int = 1  # uvicorn worker processes

    @property
    def label(self) -> str:
        label = LABELS[self.name]
        return f"{label}, {self.workers} workers" if self.workers > 1 else label


@dataclass
class Results:
    header: list[str]
    concurrency: int
    observations: int
    baseline: list[Phase] = field(default_factory=list)
    backends: list[Backend] = field(default_factory=list)

    @property
    def baseline_rate(self) -> float:
        rates = [phase.rate for phase in self.baseline]
        return sum(rates) / len(rates) if rates else float("nan")

    def phases(self) -> list[Phase]:
        return self.baseline + [p for b in self.backends for p in b.phases.values()]

    def error_count(self) -> int:
        return sum(phase.error_count for phase in self.phases())


def _ms(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.1f}"


def _pct(phase: Phase, pct: float, unit: str = "") -> str:
    """A percentile in ms, with the sample count when it is too small to trust."""
    count = len(phase.latencies)
    if count == 0:
        return f"none done in {phase.seconds:.0f} s"
    text = _ms(phase.percentile(pct)) + unit
    return text if count >= 100 else f"{text} (n={count})"


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def targets(results: Results) -> list[tuple[str, str, bool]]:
    """(target, measured, passed) for every target the issue sets."""
    found = []
    base = results.baseline_rate
    for backend in results.backends:
        label = backend.label
        target = CREATE_SHARE_TARGETS.get(backend.name)
        if target is not None and backend.workers == 1 and "create" in backend.phases:
            share = backend.phases["create"].rate / base
            found.append(
                (
                    f"creates/s on {label} >= {target:.0%} of the baseline",
                    f"{share:.0%} ({backend.phases['create'].rate:,.0f} vs {base:,.0f}/s)",
                    share >= target,
                )
            )
        if "search" in backend.phases:
            search = backend.phases["search"]
            p99 = search.percentile(99)
            found.append(
                (
                    f"search p99 on {label} < {SEARCH_P99_TARGET_MS:.0f} ms",
                    _pct(search, 99, " ms"),
                    bool(search.latencies) and p99 < SEARCH_P99_TARGET_MS,
                )
            )
    return found


def markdown(results: Results) -> str:
    c = results.concurrency
    base = results.baseline_rate
    lines = ["# Outcomes service benchmark", "", *results.header, ""]
    lines += [
        f"| {results.observations:,} Observations stored | creates/s (c={c}) | vs baseline "
        "| read p50 ms | read p99 ms "
        f"| search p50 ms | search p99 ms | reads/s (c={c}) | searches/s (c={c}) "
        f"| search p99 ms (c={c}) |",
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
        f"| baseline: parse + validate + echo | {base:,.0f} | 100% | | | | | | | |",
    ]
    for backend in results.backends:
        p = backend.phases
        create = p.get("create")
        cells = [
            backend.label,
            f"{create.rate:,.0f}" if create else "",
            f"{create.rate / base:.0%}" if create else "",
        ]
        for name in ("read", "search"):
            phase = p.get(name)
            cells += [_pct(phase, 50), _pct(phase, 99)] if phase else ["", ""]
        for name in ("read-loaded", "search-loaded"):
            phase = p.get(name)
            cells.append(f"{phase.rate:,.0f}" if phase else "")
        loaded = p.get("search-loaded")
        cells.append(_pct(loaded, 99) if loaded else "")
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "## Targets", ""]
    for target, measured, ok in targets(results):
        lines.append(f"- **{_verdict(ok)}** {target}: {measured}")
    lines += ["", "## Details", ""]
    lines += _details(results)
    return "\n".join(lines) + "\n"


def _details(results: Results) -> list[str]:
    lines = [
        "- read and search p50/p99: one request at a time (c=1), the latency a clinician sees; "
        f"the c={results.concurrency} columns are the same requests under load.",
        "- baseline runs (before and after the service runs): "
        + ", ".join(f"{phase.rate:,.0f}/s" for phase in results.baseline),
    ]
    for phase in results.baseline:
        lines.append(
            f"- baseline {phase.name}: server CPU {phase.server_cpu:.0%} of a core, "
            f"bench client {phase.client_cpu:.0%}, machine {phase.machine_cpu:.0%} busy"
        )
    for backend in results.backends:
        label = backend.label
        if backend.load_seconds:
            lines.append(f"- {label}: loaded in {backend.load_seconds:.1f} s")
        for phase in backend.phases.values():
            extra = ""
            if phase.hits:
                extra = f", {sum(phase.hits) / len(phase.hits):.1f} matches per search on average"
            lines.append(
                f"  - {phase.name} (c={phase.concurrency}): {len(phase.latencies):,} requests, "
                f"{phase.rate:,.0f}/s, p50 {_ms(phase.percentile(50))} ms, "
                f"p99 {_ms(phase.percentile(99))} ms; server CPU {phase.server_cpu:.0%}, "
                f"bench client {phase.client_cpu:.0%}, machine {phase.machine_cpu:.0%} busy{extra}"
            )
    for phase in results.phases():
        if phase.error_count:
            lines.append(f"- ERRORS in {phase.name}: {phase.error_count}")
            lines += [f"  - {error}" for error in phase.errors]
    return lines


def as_json(results: Results) -> dict[str, Any]:
    def phase(p: Phase) -> dict[str, Any]:
        return {
            "concurrency": p.concurrency,
            "seconds": p.seconds,
            "requests": len(p.latencies),
            "per_second": round(p.rate, 1),
            "p50_ms": round(p.percentile(50), 2),
            "p99_ms": round(p.percentile(99), 2),
            "errors": p.error_count,
            "server_cpu": round(p.server_cpu, 2),
            "client_cpu": round(p.client_cpu, 2),
            "machine_cpu": round(p.machine_cpu, 2),
        }

    return {
        "observations": results.observations,
        "concurrency": results.concurrency,
        "header": results.header,
        "baseline": [phase(p) for p in results.baseline],
        "baseline_per_second": round(results.baseline_rate, 1),
        "backends": {
            b.name: {
                "load_seconds": round(b.load_seconds, 1),
                **{name: phase(p) for name, p in b.phases.items()},
            }
            for b in results.backends
        },
        "targets": [{"target": t, "measured": m, "pass": ok} for t, m, ok in targets(results)],
    }


def chart(results: Results, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib import ticker

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.8))
    names = ["baseline"] + [b.label for b in results.backends]
    rates = [results.baseline_rate] + [
        b.phases["create"].rate if "create" in b.phases else 0 for b in results.backends
    ]
    colors = ["#999999", "#4c72b0", "#dd8452", "#c44e52"][: len(names)]
    bars = left.bar(names, rates, color=colors)
    left.bar_label(bars, fmt="{:,.0f}")
    for name, target in CREATE_SHARE_TARGETS.items():
        left.axhline(
            results.baseline_rate * target,
            color="red",
            linestyle="--" if name == "postgres" else ":",
            linewidth=1,
            label=f"target {LABELS[name]}: {target:.0%} of the baseline",
        )
    left.legend(loc="upper right")
    left.set_title(f"Observation creates/s (c={results.concurrency})")
    left.set_ylabel("creates per second")

    groups = [(f"{kind} p{pct}", kind, pct) for kind in ("read", "search") for pct in (50, 99)]
    # Rows measured for creates only (more workers) have no latencies to show.
    latency_backends = [b for b in results.backends if b.workers == 1]
    width = 0.8 / max(1, len(latency_backends))
    colours = {"sqlite": "#4c72b0", "postgres": "#dd8452"}
    for i, backend in enumerate(latency_backends):
        values = [
            backend.phases[kind].percentile(pct) if kind in backend.phases else math.nan
            for _, kind, pct in groups
        ]
        xs = _offsets(i, len(latency_backends), width, groups)
        for x, value in zip(xs, values, strict=True):
            if math.isnan(value):
                right.text(x, 0.6, "none\ndone", ha="center", fontsize=7)
        values = [0.0 if math.isnan(v) else v for v in values]
        bars = right.bar(xs, values, width, label=LABELS[backend.name], color=colours[backend.name])
        right.bar_label(bars, labels=[f"{v:.1f}" if v else "" for v in values], fontsize=8)
    right.axhline(
        SEARCH_P99_TARGET_MS,
        color="red",
        linestyle="--",
        linewidth=1,
        label=f"search p99 target ({SEARCH_P99_TARGET_MS:.0f} ms)",
    )
    right.set_xticks(range(len(groups)), [g[0] for g in groups])
    right.set_yscale("log")
    right.set_ylim(bottom=0.5)
    right.yaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    right.yaxis.set_minor_formatter(ticker.NullFormatter())
    right.set_ylabel("milliseconds (c=1), log scale")
    right.set_title("Read and search latency")
    right.legend(loc="upper left")
    fig.suptitle(results.header[0].lstrip("- "), fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _offsets(i: int, count: int, width: float, groups: list[Any]) -> list[float]:
    return [x + (i - (count - 1) / 2) * width for x in range(len(groups))]


def write(results: Results, folder: Path) -> str:
    """Write latest.md, latest.json and latest.png; return the Markdown."""
    folder.mkdir(parents=True, exist_ok=True)
    text = markdown(results)
    (folder / "latest.md").write_text(text)
    (folder / "latest.json").write_text(json.dumps(as_json(results), indent=2) + "\n")
    chart(results, folder / "latest.png")
    return text
