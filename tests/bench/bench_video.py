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
                errors = {s.stats.last_error for s in sources if s.stats.last_error}
                raise RuntimeError(
                    f"only {sum(s.stats.packets > 25 for s in sources)} of {streams} pulls "
                    f"started within 60 s; errors: {errors or 'none'}"
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
    fps = packets / wall / streams
    # In 720p25 streams: when the loaded server delivers fewer frames, count only what came.
    full = streams * min(1.0, fps / server.fps)
    return {
        "streams": streams,
        "cores_busy": cores,
        "fps_per_stream": fps,
        "streams_per_core": full / cores if cores > 0 else math.inf,
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
    """Milliseconds from a frame reaching anjian to a browser client having it buffered (p50).

    Method: the camera is pulled into a ring whose listener records each frame's arrival (wall
    clock, the `wall_ns` the ring stamps); the live feed (video/live.py) remuxes it to fMP4 and
    relays it over a WebSocket (web/video_live.py's relay, without the sign-in, which costs
    nothing per frame) to Debian's Chromium playing tests/live_page with js/camera_view.js. The
    page logs, every 2 ms, when the newest buffered media time grew, and each frame it composited
    (requestVideoFrameCallback). A frame's media time is its dts minus the feed's first dts, so
    its latency is the first log time whose buffered end passes the frame's middle minus its
    arrival. Same machine, same clock. Not counted: the camera's encoder, RTP, and the one frame
    the source holds to join an access unit's packets (40 ms at 25 fps).
    """
    import itertools
    import shutil
    import statistics

    from aiohttp import web
    from playwright.async_api import async_playwright

    from video.live import LiveService
    from video.ring import Packet
    from web.video_live import relay

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        print("(c) live latency: skipped, no chromium", flush=True)
        return math.nan
    repo = Path(__file__).parents[2]
    page_dir, static = repo / "tests" / "live_page", repo / "web" / "static"
    warmup_s = 3.0
    ring = PacketRing(10)
    arrivals: dict[int, int] = {}  # dts → wall ns of its arrival in the ring

    def arrived(packet: Packet) -> None:
        arrivals[packet.dts] = packet.wall_ns

    ring.add_listener(arrived)
    source = CameraSource("live", SourceSettings(server.url(), probe_every_s=3600), ring)
    source.start()
    live = LiveService(lambda _camera: ring)

    async def camera(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(compress=False)
        await ws.prepare(request)
        async with live.watch("bench") as viewer:
            sender = asyncio.create_task(relay(viewer, ws))
            async for _ in ws:
                pass
            sender.cancel()
        return ws

    async def test_page(request: web.Request) -> web.FileResponse:
        return web.FileResponse(page_dir / request.match_info["name"])

    async def module(request: web.Request) -> web.FileResponse:
        # The console's own i18n/dom/api modules when present, else the test stand-ins.
        name = request.match_info["name"]
        path = static / "js" / name
        return web.FileResponse(path if path.exists() else page_dir / name)

    app = web.Application()
    app.router.add_get("/ws/cameras/{id}/live", camera)
    app.router.add_get("/live-test/{name}", test_page)
    app.router.add_get("/static/js/{name:[a-z0-9_]+\\.js}", module)
    app.router.add_static("/static/", static)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(
                executable_path=chromium,
                args=["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                      "--disable-background-networking", "--disable-component-update",
                      "--disable-sync"],
            )  # fmt: skip
            page = await browser.new_page()
            await page.goto(f"http://127.0.0.1:{port}/live-test/index.html?camera=bench")
            deadline = time.monotonic() + 60
            while not await page.evaluate("!!window.cameraTest?.buffered.length"):
                if time.monotonic() > deadline:
                    raise RuntimeError("the browser got no video within 60 s")
                await asyncio.sleep(0.1)
            start_ns = time.time_ns() + int(warmup_s * 1e9)  # past the joining burst
            await asyncio.sleep(warmup_s + args.seconds)
            buffered, shown = await page.evaluate(
                "[window.cameraTest.buffered, window.cameraTest.shown]"
            )
            feed = live.feed("bench")
            origin = feed.media_origin if feed else None
            restarts = feed.restarts if feed else 0
            await browser.close()
    finally:
        await runner.cleanup()
        live.close()
        source.stop()
    if origin is None or restarts != 1:
        raise RuntimeError(f"the live feed restarted during the measurement ({restarts})")
    first_dts, time_base = origin
    frames = sorted(
        (float((dts - first_dts) * time_base), wall)
        for dts, wall in arrivals.items()
        if dts >= first_dts and wall >= start_ns
    )
    frame_s = statistics.median(b[0] - a[0] for a, b in itertools.pairwise(frames))

    def latencies(log: list[list[float]], offset_s: float) -> list[float]:
        """For each frame, the first log time whose media time passes it, minus its arrival."""
        out, i = [], 0
        for media_s, wall_ns in frames:
            while i < len(log) and log[i][1] < media_s + offset_s:
                i += 1
            if i == len(log):
                break
            out.append(log[i][0] - wall_ns / 1e6)
        return out

    to_buffer = latencies(buffered, frame_s / 2)
    to_screen = latencies(shown, -frame_s / 2)
    if len(to_buffer) < 10:
        raise RuntimeError(f"only {len(to_buffer)} frames reached the browser")
    p50, p95 = np.percentile(to_buffer, [50, 95])
    seen = np.percentile(to_screen, [50, 95]) if to_screen else [math.nan] * 2
    print(
        f"(c) live 1280x720 ring → browser, {len(to_buffer)} frames: buffered p50 {p50:.0f} ms, "
        f"p95 {p95:.0f} ms; shown p50 {seen[0]:.0f} ms, p95 {seen[1]:.0f} ms",
        flush=True,
    )
    return float(p50)


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
