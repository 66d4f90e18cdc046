"""Alarm evaluator benchmark: the rule kinds the alarm engine issue names (four limits with
deadbands and delays, rate of change, quality, stale, stuck) on 100,000 points, measured against
a bare numpy evaluation of the four limit comparisons on the same arrays in the same run. The
same with every kind (out of range and forecast too) is printed before it.

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


def make_rules(points: int, every_kind: bool = False) -> RuleArrays:
    """Every point with four limits with deadbands (1 % of the range) and delays, rate of
    change, bad quality, stale and stuck; with `every_kind` out of range and forecast too."""
    return RuleArrays.build(
        PointRule(
            point=i,
            hh=90.0,
            h=80.0,
            l=20.0,
            ll=10.0,
            range=(0.0, 100.0),
            out_of_range=every_kind,
            deadband_pct=1.0,
            on_delay_s=2.0,
            off_delay_s=2.0,
            roc=RateOfChange(limit_per_s=5.0, window_s=10.0),
            bad_quality=BadQuality(after_s=5.0),
            stale=Stale(period_s=1.0, periods=3.0),
            stuck=Stuck(epsilon=1e-6, window_s=600.0),
            forecast=Forecast(window_s=30.0, horizon_s=60.0) if every_kind else None,
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
    rules, every = make_rules(args.points), make_rules(args.points, every_kind=True)
    batches = split(make_rounds(args.points, args.rounds), args.batch, args.polls)
    evaluations = sum(len(b) for b in batches)
    start = int(batches[0].ts.min())
    initial = EvalState.initial(rules, start)
    initial_every = EvalState.initial(every, start)
    # All alike: a warm-up on the first batches, then the best of three runs, taken in turn so
    # that each sees the same load on a shared machine.
    ceiling(rules, batches[:2])
    ours(rules, initial, batches[:2])
    ours(every, initial_every, batches[:2])
    runs = [
        (
            ceiling(rules, batches),
            ours(rules, initial, batches),
            ours(every, initial_every, batches),
        )
        for _ in range(3)
    ]
    ceiling_rate = evaluations / min(c for c, _, _ in runs)
    lines = []
    for name, results in (("every kind", [e for *_, e in runs]), ("", [o for _, o, _ in runs])):
        t_ours, changes = min(results)
        if len({n for _, n in results}) != 1:
            raise SystemExit(f"bench alarms: runs found different changes: {results}")
        print(
            f"{name or 'issue kinds'}: {args.points:,} points, {len(batches)} batches of "
            f"{args.batch:,} points × {args.polls} poll(s), {evaluations:,} point-evaluations, "
            f"{changes:,} condition changes",
            file=sys.stderr,
        )
        ours_rate = evaluations / t_ours
        lines.append(
            f"bench alarms{f' ({name})' if name else ''}: ours={ours_rate:.0f} "
            f"ceiling={ceiling_rate:.0f} ratio={ours_rate / ceiling_rate:.2f}"
        )
    print(lines[0], file=sys.stderr)
    return lines[1]


if __name__ == "__main__":
    print(asyncio.run(main(sys.argv[1:])))
