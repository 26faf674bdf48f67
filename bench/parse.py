"""The cost of exact decimals: parsing and writing JSON against orjson, measured in the same run.

`python -m bench.parse` prints one table (also written to bench/results/parse.md): per document,
microseconds per operation (best of several repeats) and the ratio to orjson doing the same job.
"""

from __future__ import annotations

import json
import os
import random
import timeit
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson

from bench.data import observation
from shared.fhir import exact_json, json_body

REPEATS = int(os.environ.get("BENCH_PARSE_REPEATS", "7"))
RESULTS = Path(__file__).resolve().parent / "results"
_BEFORE = json.JSONDecoder(
    object_pairs_hook=json_body._refuse_duplicates,
    parse_constant=json_body._refuse_constant,
)


def _stored(resource: dict[str, Any], n: int) -> dict[str, Any]:
    """The resource as the store keeps it: id and meta stamped."""
    return {
        **resource,
        "id": f"00000000-0000-4000-8000-{n:012d}",
        "meta": {"versionId": "1", "lastUpdated": "2026-03-01T10:00:00.123456Z"},
    }


def documents() -> dict[str, bytes]:
    """JSON texts as stored: a Patient, Observations whose value is written 72, 72.5 and
    72.50 (only the last is not orjson's own form of the number), search pages of 50."""
    rng = random.Random(3)
    patient = {
        "resourceType": "Patient",
        "identifier": [{"system": "urn:kemdr:mrn", "value": "MRN-000123"}],
        "name": [{"family": "Chalmers", "given": ["Peter", "James"]}],
        "telecom": [{"system": "phone", "value": "(03) 5555 6473", "use": "work"}],
        "gender": "male",
        "birthDate": "1974-12-25",
        "address": [{"line": ["534 Erewhon St"], "city": "PleasantVille", "postalCode": "3999"}],
    }
    texts = {"Patient": orjson.dumps(_stored(patient, 1))}
    template = observation(rng, 2000)
    for value in ("72", "72.5", "72.50"):
        template["valueQuantity"]["value"] = "@value@"
        text = orjson.dumps(_stored(template, 1)).replace(b'"@value@"', value.encode())
        texts[f"Observation, value {value}"] = text
    for value in ("72.5", "72.50"):
        page = {
            "resourceType": "Bundle",
            "type": "searchset",
            "total": 50,
            "entry": [
                {"fullUrl": f"urn:x:{i}", "resource": _stored(template, i), "search": {}}
                for i in range(50)
            ],
        }
        text = orjson.dumps(page).replace(b'"@value@"', value.encode())
        texts[f"search page, 50 x {value}"] = text
    return texts


@contextmanager
def _floats_in_bodies() -> Iterator[None]:
    """json_body as it was before exact decimals: the same strict pass, numbers as floats."""
    exact = json_body._STRICT
    json_body._STRICT = _BEFORE
    try:
        yield
    finally:
        json_body._STRICT = exact


def _best(run: Callable[[], Any]) -> float:
    """Microseconds per call, the best of REPEATS timings (the machine is shared and noisy)."""
    timer = timeit.Timer(run)
    number, _ = timer.autorange()
    return min(timer.repeat(REPEATS, number)) / number * 1e6


def measure() -> list[tuple[str, str, float, float]]:
    """(document, operation, µs, ratio to orjson's same operation) rows."""
    rows = []
    for name, raw in documents().items():
        text = raw.decode()
        exact = exact_json.loads(raw)
        plain = orjson.loads(raw)
        baseline = _best(lambda raw=raw: orjson.loads(raw))
        rows.append((name, "parse: orjson.loads (baseline; stored reads before)", baseline, 1.0))
        with _floats_in_bodies():
            before = _best(lambda raw=raw: json_body.loads(raw))
        for label, spent in (
            ("parse client body: json_body.loads before (floats)", before),
            (
                "parse client body: json_body.loads now (exact)",
                _best(lambda raw=raw: json_body.loads(raw)),
            ),
            ("parse stored: exact_json.loads", _best(lambda text=text: exact_json.loads(text))),
        ):
            rows.append((name, label, spent, spent / baseline))
        baseline = _best(lambda plain=plain: orjson.dumps(plain))
        rows.append((name, "write: orjson.dumps (baseline)", baseline, 1.0))
        spent = _best(lambda exact=exact: exact_json.dumps(exact))
        rows.append((name, "write: exact_json.dumps", spent, spent / baseline))
    return rows


def table(rows: list[tuple[str, str, float, float]]) -> str:
    """A Markdown table of the rows."""
    lines = ["| document | operation | µs | vs orjson |", "|---|---|--:|--:|"]
    lines += [f"| {d} | {op} | {us:,.1f} | {ratio:.1f}x |" for d, op, us, ratio in rows]
    return "\n".join(lines)


def main() -> None:
    text = table(measure())
    print(text)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "parse.md").write_text(text + "\n")


if __name__ == "__main__":
    main()
