"""Benchmark: RTSP pulls per CPU core (packets only, no decoding), snapshot latency, live latency.

A local GStreamer RTSP server (the system Python) serves one 1280x720 25 fps H.264 mount, shared
by all clients (one encoder). (a) N CameraSources pull it at once in this process; the process
CPU time over the window gives streams per core = N / cores busy (the server's CPU is not ours).
(b) p99 of uncached snapshots (keyframe decode + JPEG encode, in a thread, as the route does).
(c) live latency to a browser client (measure_live_latency).
Printed, not asserted; targets ≥ 50 streams per core, snapshot p99 ≤ 300 ms, live ≤ 1 s.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import resource
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.video_kit import RtspServer, gstreamer_missing
from video.ring import PacketRing
from video.snapshot import Snapshotter
from video.source import CameraSource, SourceSettings


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def measure_pulls(server: RtspServer, streams: int, seconds: float) -> dict[str, float]:
    sources = [
        CameraSource(f"bench{i}", SourceSettings(server.url(), probe_every_s=3600), PacketRing())
        for i in range(streams)
    ]
    for s in sources:
        s.start()
    try:
        deadline = time.monotonic() + 60
        while sum(s.stats.packets > 25 for s in sources) < streams:
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"only {sum(s.stats.packets > 25 for s in sources)} of {streams} pulls "
                    "started within 60 s"
                )
            await asyncio.sleep(0.2)
        await asyncio.sleep(2)  # past the connection bursts
        packets0 = sum(s.stats.packets for s in sources)
        cpu0, wall0 = _cpu_s(), time.monotonic()
        await asyncio.sleep(seconds)
        cpu, wall = _cpu_s() - cpu0, time.monotonic() - wall0
        packets = sum(s.stats.packets for s in sources) - packets0
    finally:
        for s in sources:
            s.stop()
    cores = cpu / wall
    return {
        "streams": streams,
        "cores_busy": cores,
        "fps_per_stream": packets / wall / streams,
        "streams_per_core": streams / cores if cores > 0 else math.inf,
    }


async def measure_snapshots(server: RtspServer, count: int) -> dict[str, float]:
    source = CameraSource("snap", SourceSettings(server.url(), probe_every_s=3600), PacketRing())
    source.start()
    try:
        for _ in range(600):  # a keyframe within a minute
            if source.ring.latest_keyframe() is not None:
                break
            await asyncio.sleep(0.1)
        snapshots = Snapshotter(source.ring, max_age_s=0.0)  # every request decodes
        times = []
        for _ in range(count):
            t = time.perf_counter()
            await snapshots.get()
            times.append((time.perf_counter() - t) * 1000)
            await asyncio.sleep(0.05)
    finally:
        source.stop()
    return {"p50_ms": float(np.percentile(times, 50)), "p99_ms": float(np.percentile(times, 99))}


async def measure_live_latency(server: RtspServer, args: argparse.Namespace) -> float:
    """Milliseconds from a frame reaching anjian to a browser client showing it (video/live.py);
    NaN until measured."""
    return math.nan


async def main(argv: Sequence[str] | None = None) -> str:
    parser = argparse.ArgumentParser(prog="anjian bench video", description=__doc__)
    parser.add_argument("--streams", type=int, default=20, help="simultaneous pulls (a)")
    parser.add_argument("--seconds", type=float, default=10.0, help="measuring window (a)")
    parser.add_argument("--snapshots", type=int, default=100, help="snapshot requests (b)")
    args = parser.parse_args(argv)
    missing = gstreamer_missing()
    if missing:
        return f"bench video: skipped: {missing}"
    server = RtspServer(("bench=anjian bench",))
    server.start()
    try:
        pulls = await measure_pulls(server, args.streams, args.seconds)
        print(
            f"(a) {args.streams} pulls of 720p25: {pulls['cores_busy']:.3f} cores busy, "
            f"{pulls['fps_per_stream']:.1f} frames/s per stream",
            flush=True,
        )
        snaps = await measure_snapshots(server, args.snapshots)
        print(
            f"(b) snapshot 1280x720: p50 {snaps['p50_ms']:.0f} ms, p99 {snaps['p99_ms']:.0f} ms",
            flush=True,
        )
        live = await measure_live_latency(server, args)
    finally:
        server.stop()
    return (
        f"bench video: streams_per_core={pulls['streams_per_core']:.0f} "
        f"snapshot_p99_ms={snaps['p99_ms']:.0f} live_latency_ms={live:.0f}"
    )


if __name__ == "__main__":
    print(asyncio.run(main(sys.argv[1:])))
