#!/usr/bin/env node
// The layer order of src/ (docs/design.md, "Layout"): a folder includes only folders below it.
// Prints every include that points up or sideways into an unlisted folder, and exits 1 if any does.
//   node tools/check_layers.mjs [SRC_DIR]
import { readdirSync, readFileSync, statSync } from "node:fs";
import path from "node:path";

// Top to bottom.
const layers = ["cli", "server", "engine", "parallel", "model", "backend", "grammar", "tokenizer", "formats", "hub", "util"];

const src = process.argv[2] ?? path.join(path.dirname(new URL(import.meta.url).pathname), "..", "src");
const folders = readdirSync(src).filter((f) => statSync(path.join(src, f)).isDirectory());
const problems = [];
for (const f of folders) if (!layers.includes(f)) problems.push(`src/${f}/: a folder with no place in the layer order (tools/check_layers.mjs)`);

function* sources(dir) {
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, entry.name);
    if (entry.isDirectory()) yield* sources(p);
    else if (/\.(h|cpp|cu|cuh)$/.test(entry.name)) yield p;
  }
}

for (const folder of folders.filter((f) => layers.includes(f))) {
  for (const file of sources(path.join(src, folder))) {
    readFileSync(file, "utf8").split("\n").forEach((line, i) => {
      const m = line.match(/^\s*#\s*include\s+"([^"/]+)\//);
      if (!m || m[1] === folder || !folders.includes(m[1])) return;
      if (layers.indexOf(m[1]) < layers.indexOf(folder)) {
        problems.push(`${path.relative(path.join(src, ".."), file)}:${i + 1}: ${folder}/ includes ${m[1]}/, a layer above it`);
      }
    });
  }
}
if (problems.length) {
  console.error(problems.join("\n"));
  console.error(`layers, top to bottom: ${layers.join(" > ")}`);
  process.exit(1);
}
console.log(`every include of src/ points down: ${layers.join(" > ")}`);
