"""Plausible score trajectories: a baseline per instrument, an improvement that builds up over
the course (responders, partial responders, non-responders) with noise, and the within-session
SUDS and VOC changes of EMDR sessions by how long after the dose they ran."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

# Instrument: (baseline mean, sd, lowest plausible baseline, range max, noise sd).
INSTRUMENTS = {
    "phq9-total": (17.0, 3.5, 10, 27, 1.5),
    "gad7-total": (14.0, 3.0, 6, 21, 1.5),
    "pcl5-total": (52.0, 9.0, 33, 80, 4.0),
    "madrs-total": (31.0, 6.0, 20, 60, 2.5),
}
# Share of patients per response class, and the range of their final relative reduction.
CLASSES = {
    "responder": (0.45, 0.55, 0.85),
    "partial": (0.30, 0.25, 0.50),
    "non-responder": (0.25, -0.05, 0.20),
}
# Offset bins (hours after the dose ended) of EMDR sessions: label, from, to.
BINS = (("0-2 h", 0, 2), ("2-24 h", 2, 24), ("24-72 h", 24, 72), ("72 h-7 d", 72, 168))
BINS += (("over 7 d", 168, None),)
# The mean SUDS drop within a session, by bin: the optimal part (24-72 h) works best.
SUDS_DROP = {"0-2 h": 3.6, "2-24 h": 3.7, "24-72 h": 4.6, "72 h-7 d": 3.2, "over 7 d": 2.4}
BUILD_UP_DAYS = 10.0  # the improvement reaches 63 % of its size after this many days


def offset_bin(hours: float) -> str:
    """The label of the bin an offset falls in."""
    for label, low, high in BINS:
        if hours >= low and (high is None or hours < high):
            return label
    return BINS[0][0]


def clamp(value: float, low: float, high: float) -> int:
    return int(max(low, min(high, round(value))))


@dataclass(frozen=True)
class Trajectory:
    """One patient's course of improvement."""

    response_class: str
    reduction: float  # the final relative reduction of every instrument (before jitter)
    relapse: float  # how much of it fades in the 12 weeks after the course
    baselines: dict[str, int]
    jitter: dict[str, float]

    def value(self, rng: random.Random, key: str, days: float, course_days: float) -> int:
        """The instrument's score `days` after the first dose (a course of `course_days`)."""
        _, _, _, top, noise = INSTRUMENTS[key]
        built = 1 - math.exp(-max(days, 0.0) / BUILD_UP_DAYS)
        faded = self.relapse * min(1.0, max(0.0, days - course_days) / 84)
        reduction = (self.reduction + self.jitter[key]) * built * (1 - faded)
        return clamp(self.baselines[key] * (1 - reduction) + rng.gauss(0, noise), 0, top)


def trajectory(rng: random.Random, optimal_share: float) -> Trajectory:
    """A patient's trajectory; more EMDR in the optimal part of the window helps a little."""
    pick, response_class = rng.random(), "non-responder"
    for name, (share, _, _) in CLASSES.items():
        if pick < share:
            response_class = name
            break
        pick -= share
    _, low, high = CLASSES[response_class]
    reduction = rng.uniform(low, high) + 0.12 * (optimal_share - 0.5)
    relapse = rng.uniform(0, 0.1 if response_class == "responder" else 0.3)
    baselines = {
        key: clamp(rng.gauss(mean, sd), floor, top)
        for key, (mean, sd, floor, top, _) in INSTRUMENTS.items()
    }
    jitter = {key: rng.uniform(-0.08, 0.08) for key in INSTRUMENTS}
    return Trajectory(response_class, reduction, relapse, baselines, jitter)


def items(rng: random.Random, total: int, count: int, top: int) -> list[int]:
    """Item scores (each 0..top) of a questionnaire adding up to `total`."""
    scores = [0] * count
    for _ in range(min(total, count * top)):
        open_items = [i for i, s in enumerate(scores) if s < top]
        scores[rng.choice(open_items)] += 1
    return scores


def suds_pair(rng: random.Random, label: str, reduction: float) -> tuple[int, int]:
    """SUDS (0-10) at the start and the end of a session."""
    start = clamp(rng.gauss(7.2, 1.1), 3, 10)
    drop = rng.gauss(SUDS_DROP[label] * (0.8 + 0.4 * max(reduction, 0)), 1.2)
    return start, clamp(start - drop, 0, start)


def voc_pair(rng: random.Random, label: str) -> tuple[int, int]:
    """VOC (1-7) at the start and the end of a session."""
    start = clamp(rng.gauss(3, 0.8), 1, 5)
    gain = rng.gauss(1.5 + (0.7 if label == "24-72 h" else 0.0), 0.8)
    return start, clamp(start + gain, start, 7)
