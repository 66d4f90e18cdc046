// Test page for js/camera_view.js (tests/test_video_live.py): one live view of ?camera=<id>,
// and logs of when the newest buffered media time grew and when frames were shown (for the
// live-latency benchmark, tests/bench/bench_video.py).
import { cameraView } from "/static/js/camera_view.js";

const camera = new URLSearchParams(location.search).get("camera");
const view = cameraView(document.getElementById("view"), camera, { label: `camera ${camera}` });
const buffered = []; // [epoch ms, newest buffered media time s]
const shown = []; // [epoch ms, media time s of the frame composited then]
let last = -1;

function sample() {
  const ranges = view.video.buffered;
  if (ranges.length) {
    const end = ranges.end(ranges.length - 1);
    if (end !== last) {
      last = end;
      buffered.push([performance.timeOrigin + performance.now(), end]);
    }
  }
}
setInterval(sample, 2);

function frame(now, meta) {
  shown.push([performance.timeOrigin + meta.expectedDisplayTime, meta.mediaTime]);
  view.video.requestVideoFrameCallback(frame);
}
if (view.video.requestVideoFrameCallback) view.video.requestVideoFrameCallback(frame);
window.cameraTest = { view, buffered, shown };
