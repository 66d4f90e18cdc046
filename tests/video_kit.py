"""A real RTSP camera for the tests: collectors/sim/rtsp_server.py under the system Python.

tests/conftest.py loads it as a plugin: ask for `rtsp_server` or `rtsp_server_factory`. Without
GStreamer's RTSP server (Debian packages, importable by /usr/bin/python3 only) the tests that
ask for a camera are skipped with the reason; `./run test` installs them when run as root.
"""

from __future__ import annotations

import functools
import os
import signal
import subprocess
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from urllib.parse import quote

import pytest

from collectors.sim.rtsp_server import GST_PACKAGES

SYSTEM_PYTHON = os.environ.get("ANJIAN_GST_PYTHON", "/usr/bin/python3")
SERVER_SCRIPT = Path(__file__).resolve().parents[1] / "collectors" / "sim" / "rtsp_server.py"
_PROBE = (
    "import gi; gi.require_version('Gst', '1.0'); gi.require_version('GstRtspServer', '1.0');"
    "from gi.repository import Gst, GstRtspServer; Gst.init(None);"
    "missing = [e for e in ('videotestsrc', 'x264enc', 'rtph264pay', 'clockoverlay')"
    " if Gst.ElementFactory.find(e) is None];"
    "print(' '.join(missing))"
)


@functools.cache
def gstreamer_missing() -> str | None:
    """Why the RTSP test server cannot run here, or None when it can."""
    try:
        done = subprocess.run(
            [SYSTEM_PYTHON, "-c", _PROBE], capture_output=True, text=True, timeout=30
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"{SYSTEM_PYTHON} cannot run: {exc}"
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return (
            f"{SYSTEM_PYTHON} cannot import GStreamer's RTSP server ({last}); install "
            f"{GST_PACKAGES} (./run test does it as root)"
        )
    if done.stdout.strip():
        return f"GStreamer elements missing: {done.stdout.strip()} (gstreamer1.0-plugins-*)"
    return None


def require_gstreamer() -> None:
    """Skip the calling test, loudly, when the RTSP test server cannot run."""
    reason = gstreamer_missing()
    if reason:
        pytest.skip(f"VIDEO TESTS SKIPPED: {reason}")


class RtspServer:
    """One RTSP server process; `kill()` and `start()` again keep its port (a camera reboot)."""

    def __init__(
        self,
        mounts: Sequence[str] = ("cam1",),
        *,
        still: Sequence[str] = (),
        user: str = "",
        password: str = "",
        width: int = 1280,
        height: int = 720,
        fps: int = 25,
        gop: int = 25,
        port: int = 0,
    ) -> None:
        self.mounts = tuple(mounts)
        self.still = tuple(still)
        self.user = user
        self.password = password
        self.width, self.height, self.fps, self.gop = width, height, fps, gop
        self.port = port
        self._process: subprocess.Popen[str] | None = None
        self._stderr: list[str] = []

    def url(self, mount: str | None = None, *, credentials: bool = True) -> str:
        """rtsp://[user:password@]127.0.0.1:port/mount (the first mount by default)."""
        name = (mount or (self.mounts + self.still)[0]).partition("=")[0]
        auth = ""
        if credentials and self.user:
            auth = f"{quote(self.user, safe='')}:{quote(self.password, safe='')}@"
        return f"rtsp://{auth}127.0.0.1:{self.port}/{name}"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self, timeout: float = 20.0) -> None:
        if self.running:
            return
        command = [SYSTEM_PYTHON, str(SERVER_SCRIPT), "--port", str(self.port)]
        command += [a for m in self.mounts for a in ("--mount", m)]
        command += [a for m in self.still for a in ("--still", m)]
        command += ["--width", str(self.width), "--height", str(self.height)]
        command += ["--fps", str(self.fps), "--gop", str(self.gop)]
        if self.user:
            command += ["--user", self.user, "--password", self.password]
        process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        self._process = process
        assert process.stdout is not None and process.stderr is not None
        stderr = process.stderr
        self._stderr = []
        threading.Thread(target=self._drain, args=(stderr,), daemon=True).start()
        line: list[str] = []
        reader = threading.Thread(target=lambda: line.append(process.stdout.readline()))  # type: ignore[union-attr]
        reader.start()
        reader.join(timeout)
        if not line or not line[0].startswith("ready "):
            self.kill()
            raise RuntimeError(
                f"RTSP test server did not start: {''.join(line)!r} {''.join(self._stderr)}"
            )
        self.port = int(line[0].split()[1])

    def _drain(self, stream: object) -> None:
        for text in stream:  # type: ignore[attr-defined]
            if len(self._stderr) < 200:
                self._stderr.append(text)

    def kill(self) -> None:
        """Stop at once (SIGKILL): the camera disappears without saying goodbye."""
        self._end(signal.SIGKILL)

    def stop(self) -> None:
        self._end(signal.SIGTERM)

    def restart(self) -> None:
        self.kill()
        self.start()

    def _end(self, signum: int) -> None:
        process = self._process
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signum)
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)
        if process.stdout:
            process.stdout.close()
        self._process = None


@pytest.fixture
def rtsp_server_factory() -> Iterator[type[RtspServer]]:
    """Start RTSP servers with any options; all of them are stopped after the test."""
    require_gstreamer()
    started: list[RtspServer] = []

    class _Tracked(RtspServer):
        def start(self, timeout: float = 20.0) -> None:
            if self not in started:
                started.append(self)
            super().start(timeout)

    yield _Tracked
    for server in started:
        server.kill()


@pytest.fixture
def rtsp_server(rtsp_server_factory: type[RtspServer]) -> RtspServer:
    """A running 1280x720 25 fps H.264 camera at `rtsp_server.url()` (mount cam1)."""
    server = rtsp_server_factory(("cam1=anjian test",))
    server.start()
    return server
