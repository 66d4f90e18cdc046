"""A simulated camera: GStreamer's RTSP server serving an H.264 test picture on local mounts.

Standalone (stdlib + gi only): run it with the system `/usr/bin/python3`, which can import
GStreamer's introspection bindings; the project's virtual environment cannot. Prints
`ready <port>` on stdout once it listens, then serves until SIGTERM/SIGINT.

    /usr/bin/python3 collectors/sim/rtsp_server.py --port 8554 --mount cam1=化工一厂 --still cam2
"""

from __future__ import annotations

import argparse
import signal
import sys
from typing import Any

# The Debian packages this server needs (`./run` installs them as root; messages name them).
GST_PACKAGES = (
    "gstreamer1.0-rtsp gir1.2-gst-rtsp-server-1.0 python3-gi gstreamer1.0-plugins-base "
    "gstreamer1.0-plugins-good gstreamer1.0-plugins-ugly gstreamer1.0-plugins-bad "
    "gstreamer1.0-libav"
)
GST_MISSING = (
    "GStreamer's RTSP server is not importable by {python}: install the Debian packages "
    + GST_PACKAGES
    + " ({error})"
)

# Role name carried by an authenticated client's token (any string: matched by permissions).
_ROLE = "camera-viewer"


def _escape(text: str) -> str:
    """Quote a value for a gst-launch description (double quotes, backslash-escaped)."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def pipeline(
    *,
    label: str,
    still: bool,
    width: int,
    height: int,
    fps: int,
    gop: int,
    bitrate_kbps: int,
) -> str:
    """The launch description of one mount: test picture, label and clock, H.264, RTP."""
    # A still mount shows a fixed picture with no clock: what a frozen camera sends.
    pattern = "smpte" if not still else "solid-color foreground-color=0xff406080"
    overlays = ""
    font = f"Sans {max(12, height // 30)}"
    if label:
        overlays += (
            f" ! textoverlay text={_escape(label)} valignment=top halignment=left"
            f" font-desc={_escape(font)} shaded-background=true"
        )
    if not still:
        overlays += (
            ' ! clockoverlay time-format="%Y-%m-%d %H:%M:%S" valignment=bottom'
            f" halignment=right font-desc={_escape(font)} shaded-background=true"
        )
    return (
        f"( videotestsrc is-live=true pattern={pattern}"
        f" ! video/x-raw,width={width},height={height},framerate={fps}/1"
        f"{overlays} ! videoconvert"
        f" ! x264enc tune=zerolatency speed-preset=ultrafast bitrate={bitrate_kbps}"
        f" key-int-max={gop} bframes=0"
        " ! video/x-h264,profile=constrained-baseline"
        " ! rtph264pay name=pay0 pt=96 config-interval=-1 )"
    )


def _parse_mount(spec: str) -> tuple[str, str]:
    path, _, label = spec.partition("=")
    path = path.strip("/")
    if not path or "/" in path:
        raise argparse.ArgumentTypeError(f"bad mount {spec!r}: expected NAME or NAME=LABEL")
    return path, label


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port (printed)")
    parser.add_argument(
        "--mount",
        action="append",
        type=_parse_mount,
        default=[],
        metavar="NAME[=LABEL]",
        help="a moving test picture at /NAME with LABEL written on it (repeatable)",
    )
    parser.add_argument(
        "--still",
        action="append",
        type=_parse_mount,
        default=[],
        metavar="NAME[=LABEL]",
        help="a still picture (no clock) at /NAME: a frozen camera (repeatable)",
    )
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=720)
    parser.add_argument("--fps", type=int, default=25)
    parser.add_argument("--gop", type=int, default=25, help="frames between keyframes")
    parser.add_argument("--bitrate", type=int, default=1500, help="kbit/s")
    parser.add_argument("--user", default="")
    parser.add_argument("--password", default="")
    args = parser.parse_args(argv)
    mounts: list[tuple[str, str, bool]] = [(p, lab, False) for p, lab in args.mount]
    mounts += [(p, lab, True) for p, lab in args.still]
    if not mounts:
        mounts = [("cam1", "", False)]

    try:
        import gi

        gi.require_version("Gst", "1.0")
        gi.require_version("GstRtspServer", "1.0")
        from gi.repository import GLib, Gst, GstRtspServer
    except (ImportError, ValueError) as exc:
        print(GST_MISSING.format(python=sys.executable, error=exc), file=sys.stderr)
        return 3
    Gst.init(None)

    server: Any = GstRtspServer.RTSPServer()
    server.set_address(args.host)
    server.set_service(str(args.port))
    points = server.get_mount_points()
    if args.user:
        auth = GstRtspServer.RTSPAuth()
        token = GstRtspServer.RTSPToken()
        token.set_string(GstRtspServer.RTSP_TOKEN_MEDIA_FACTORY_ROLE, _ROLE)
        auth.add_basic(GstRtspServer.RTSPAuth.make_basic(args.user, args.password), token)
        server.set_auth(auth)
    for path, label, still in mounts:
        factory = GstRtspServer.RTSPMediaFactory()
        factory.set_launch(
            pipeline(
                label=label,
                still=still,
                width=args.width,
                height=args.height,
                fps=args.fps,
                gop=args.gop,
                bitrate_kbps=args.bitrate,
            )
        )
        # One encoder per mount, whatever the number of clients (benchmarks pull many).
        factory.set_shared(True)
        if args.user:
            permissions = GstRtspServer.RTSPPermissions()
            permissions.add_permission_for_role(_ROLE, "media.factory.access", True)
            permissions.add_permission_for_role(_ROLE, "media.factory.construct", True)
            factory.set_permissions(permissions)
        points.add_factory("/" + path, factory)

    loop = GLib.MainLoop()
    if server.attach(None) == 0:
        print(f"cannot listen on {args.host}:{args.port}", file=sys.stderr)
        return 2
    for signum in (signal.SIGTERM, signal.SIGINT):
        GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signum, loop.quit)
    print(f"ready {server.get_bound_port()}", flush=True)
    loop.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
