// Copies the console's front-end libraries from node_modules/ into web/static/vendor/
// (gitignored), from where anjian serves them: the console loads nothing from the internet.
// Run by `npm run vendor` (./run does it after `npm ci`). One line per file: [from, to].
import { copyFileSync, mkdirSync, rmSync } from "node:fs";
import { dirname, join } from "node:path";
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
