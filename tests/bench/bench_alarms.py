"""Alarm evaluator benchmark: every rule kind on 100,000 points, measured against a bare numpy
evaluation of the four limit comparisons on the same arrays in the same run.

Run: python tests/bench/bench_alarms.py [--points N] [--rounds R] [--batch B] [--polls K]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Sequence

import numpy as np

from alarms.evaluator import EvalState, evaluate, tick
from alarms.rules import (
    BadQuality,
    Forecast,
    PointRule,
    RateOfChange,
    RuleArrays,
    Stale,
    Stuck,
)
from streams.batch import SampleBatch

SECOND = 1_000_000_000


def make_rules(points: int) -> RuleArrays:
    """Every point with all rule kinds: four limits with deadbands and delays, rate of change,
    bad quality, stale, stuck, out of range and forecast."""
    return RuleArrays.build(
        PointRule(
            point=i,
            hh=90.0,
            h=80.0,
            l=20.0,
            ll=10.0,
            range=(0.0, 100.0),
            deadband_pct=1.0,
            on_delay_s=2.0,
            off_delay_s=2.0,
            roc=RateOfChange(limit_per_s=5.0, window_s=10.0),
            bad_quality=BadQuality(after_s=5.0),
            stale=Stale(period_s=1.0, periods=3.0),
            stuck=Stuck(epsilon=1e-6, window_s=600.0),
            forecast=Forecast(window_s=30.0, horizon_s=60.0),
        )
        for i in range(1, points + 1)
    )


def make_rounds(points: int, rounds: int, seed: int = 0) -> list[SampleBatch]:
    """One sample per point per second: random walks around 50 (a few percent of the points
    wander through the limits), 1 % bad quality, points in shuffled device order."""
    rng = np.random.default_rng(seed)
    ids = rng.permutation(np.arange(1, points + 1, dtype=np.int32))
    level = rng.normal(50.0, 8.0, points)
    start = 1_700_000_000 * SECOND
    out = []
    for r in range(rounds):
        level += rng.normal(0.0, 0.3, points)
        ts = np.full(points, start + r * SECOND, np.int64) + rng.integers(0, 5_000_000, points)
        quality = np.where(rng.random(points) < 0.01, 2, 0).astype(np.uint8)
        out.append(SampleBatch(ts, ids.copy(), level[ids - 1].copy(), quality))
    return out


def split(rounds: list[SampleBatch], batch: int, polls: int) -> list[SampleBatch]:
    """Batches of `batch` points, each carrying `polls` consecutive samples of its points."""
    out = []
    for k in range(0, len(rounds) - polls + 1, polls):
        group = rounds[k : k + polls]
        for lo in range(0, len(group[0]), batch):
            out.append(
                SampleBatch.concat([b.take(np.arange(lo, min(lo + batch, len(b)))) for b in group])
            )
    return out


def ceiling(rules: RuleArrays, batches: Sequence[SampleBatch]) -> float:
    """The four comparisons alone: gather each batch's limits (the fastest numpy gather of the
    row, `take`) and compare."""
    start = time.perf_counter()
    for b in batches:
        lim = rules.limit.take(b.point, axis=0)
        v = b.value
        _ = (v > lim[:, 0], v > lim[:, 1], v < lim[:, 2], v < lim[:, 3])
    return time.perf_counter() - start


def ours(
    rules: RuleArrays, initial: EvalState, batches: Sequence[SampleBatch]
) -> tuple[float, int]:
    """Every batch evaluated, then a tick at its latest time, from a copy of `initial`."""
    state = initial.copy()
    changes = 0
    start = time.perf_counter()
    for b in batches:
        state, ch = evaluate(rules, state, b)
        changes += len(ch)
        state, ch = tick(rules, state, int(b.ts.max()))
        changes += len(ch)
    return time.perf_counter() - start, changes


async def main(argv: Sequence[str]) -> str:
    ap = argparse.ArgumentParser(prog="bench alarms", description=__doc__)
    ap.add_argument("--points", type=int, default=100_000)
    ap.add_argument("--rounds", type=int, default=30, help="seconds of data (one sample each)")
    ap.add_argument("--batch", type=int, default=100_000, help="points per batch")
    ap.add_argument("--polls", type=int, default=1, help="samples of each point per batch")
    args = ap.parse_args(argv)
    rules = make_rules(args.points)
    batches = split(make_rounds(args.points, args.rounds), args.batch, args.polls)
    evaluations = sum(len(b) for b in batches)
    initial = EvalState.initial(rules, int(batches[0].ts.min()))
    # Both sides alike: a warm-up on the first batches, then the best of three runs, taken in
    # turn so that both see the same load on a shared machine.
    ceiling(rules, batches[:2])
    ours(rules, initial, batches[:2])
    runs = [(ceiling(rules, batches), ours(rules, initial, batches)) for _ in range(3)]
    t_ceiling = min(c for c, _ in runs)
    t_ours, changes = min(o for _, o in runs)
    if len({n for _, (_, n) in runs}) != 1:
        raise SystemExit(f"bench alarms: runs found different changes: {runs}")
    print(
        f"{args.points:,} points, {len(batches)} batches of {args.batch:,} points × "
        f"{args.polls} poll(s), {evaluations:,} point-evaluations, {changes:,} condition changes",
        file=sys.stderr,
    )
    ours_rate = evaluations / t_ours
    ceiling_rate = evaluations / t_ceiling
    return (
        f"bench alarms: ours={ours_rate:.0f} ceiling={ceiling_rate:.0f} "
        f"ratio={ours_rate / ceiling_rate:.2f}"
    )


if __name__ == "__main__":
    print(asyncio.run(main(sys.argv[1:])))
