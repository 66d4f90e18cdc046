// The camera slot of an alarm's detail: the live view of the cameras linked to the alarm's point
// and the evidence saved when it became active (clip and snapshot, when there are any).
//
//   const media = alarmMedia(slot, {id: alarm.id, point: alarm.point});  ...  media.destroy();
import { call } from "./api.js";
import { cameraView, ensureStyle } from "./camera_view.js";
import { el } from "./dom.js";
import { onLang, register, t, translate } from "./i18n.js";

register({
  "zh-CN": {
    "alarm_media.live": "关联摄像机实时画面",
    "alarm_media.clip": "报警录像（报警前后）",
    "alarm_media.snapshot": "报警时刻快照",
    "alarm_media.no_camera": "该测点未关联摄像机",
  },
  en: {
    "alarm_media.live": "Linked cameras, live",
    "alarm_media.clip": "Alarm clip (before and after)",
    "alarm_media.snapshot": "Picture at the alarm",
    "alarm_media.no_camera": "No camera watches this point",
  },
});

export function alarmMedia(container, alarm) {
  ensureStyle();
  const views = [];
  const live = el("div", { class: "alarm-media-live" });
  const note = el("p", { class: "empty", "data-i18n": "alarm_media.no_camera", hidden: true });
  const clip = el("video", { class: "alarm-media-clip", controls: true, preload: "metadata" });
  clip.muted = true;
  const picture = el("img", { class: "alarm-media-snapshot", alt: "" });
  const clipBox = el("figure", { hidden: true },
    clip, el("figcaption", { "data-i18n": "alarm_media.clip" }));
  const pictureBox = el("figure", { hidden: true },
    picture, el("figcaption", { "data-i18n": "alarm_media.snapshot" }));
  const root = el("section", { class: "alarm-media" },
    el("h3", { "data-i18n": "alarm_media.live" }), live, note, clipBox, pictureBox);
  container.append(root);
  translate(root);
  const offLang = onLang(() => translate(root));

  // Saved evidence: shown when the server has it (404 until the clip is written).
  clip.addEventListener("loadedmetadata", () => { clipBox.hidden = false; });
  picture.addEventListener("load", () => { pictureBox.hidden = false; });
  clip.src = `/api/alarms/${encodeURIComponent(alarm.id)}/clip.mp4`;
  picture.src = `/api/alarms/${encodeURIComponent(alarm.id)}/snapshot.jpg`;

  let alive = true;
  call("GET", "/api/cameras", undefined, { background: true })
    .then((answer) => {
      if (!alive) return;
      const cameras = (answer.cameras || answer)
        .filter((c) => (c.points || []).includes(alarm.point));
      note.hidden = cameras.length > 0;
      for (const c of cameras) views.push(cameraView(live, c.id, { label: c.name }));
    })
    .catch(() => { if (alive) note.hidden = false; });

  return {
    element: root,
    destroy() {
      alive = false;
      for (const v of views) v.destroy();
      clip.removeAttribute("src");
      clip.load();
      if (typeof offLang === "function") offLang();
      root.remove();
    },
  };
}
