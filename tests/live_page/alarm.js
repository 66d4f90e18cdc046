// Test page for js/alarm_media.js: the camera slot of ?alarm=<id>&point=<point id>.
import { alarmMedia } from "/static/js/alarm_media.js";

const q = new URLSearchParams(location.search);
const media = alarmMedia(document.getElementById("slot"), {
  id: q.get("alarm"),
  point: Number(q.get("point")),
});
window.cameraTest = { media };
