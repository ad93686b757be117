// Tokenizer encode throughput, one thread: nanoserve (C++) against Hugging Face's tokenizers.js on
// the same texts in the same run, for each real vocabulary; also nanoserve's load time.
// Usage: node bench/tokenizer/run.mjs [--binary build/bench/tokenizer_encode] [--mb 4]
//        [--out texts.jsonl]  (--out also writes the texts, for bench/tokenizer/hf_tokenizers.py)
import { spawnSync } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { corpus, loadReference, vocabularies } from "../../tests/tokenizer/hf/vocabularies.mjs";

const { values } = parseArgs({
  options: { binary: { type: "string", default: "build/bench/tokenizer_encode" }, mb: { type: "string", default: "4" }, out: { type: "string" } },
});

// Distinct text, so that no word cache is flattered by repetition: the multilingual test corpus and
// the demo's held-out prose once, then the documentation and code of the npm packages installed
// beside (Markdown, JavaScript, TypeScript), one document per file, up to the size asked for.
const root = join(dirname(fileURLToPath(import.meta.url)), "../..");
const texts = [...corpus];
for (const line of readFileSync(join(root, "models/demo/heldout.jsonl"), "utf8").trim().split("\n")) texts.push(JSON.parse(line).text);
let gathered = texts.reduce((n, t) => n + Buffer.byteLength(t), 0);
const files = readdirSync(join(root, "node_modules"), { recursive: true }).filter((f) => /\.(md|js|ts|mjs)$/.test(f)).sort();
for (const f of files) {
  if (gathered >= Number(values.mb) * 1e6) break;
  const text = readFileSync(join(root, "node_modules", f), "utf8");
  if (text.length < 200 || text.length > 200000) continue;
  texts.push(text);
  gathered += Buffer.byteLength(text);
}
const file = values.out ?? join(mkdtempSync(join(tmpdir(), "tokbench-")), "texts.jsonl");
writeFileSync(file, texts.map((text) => JSON.stringify({ text })).join("\n") + "\n");
const totalBytes = texts.reduce((n, t) => n + Buffer.byteLength(t), 0);

function referenceSpeed(tokenizer) {
  for (const t of texts.slice(0, 200)) tokenizer.encode(t, { add_special_tokens: false });  // warm up
  const start = process.hrtime.bigint();
  for (const t of texts) tokenizer.encode(t, { add_special_tokens: false });
  return totalBytes / (Number(process.hrtime.bigint() - start) / 1e9) / 1e6;
}

console.log(`${(totalBytes / 1e6).toFixed(1)} MB of text, ${texts.length} documents, one thread\n`);
console.log("| vocabulary | nanoserve MB/s | tokenizers.js MB/s | ratio | nanoserve load ms |");
console.log("|---|---:|---:|---:|---:|");
for (const vocabulary of vocabularies) {
  const run = spawnSync(values.binary, [vocabulary.dir, file], { encoding: "utf8" });
  if (run.status !== 0) throw new Error(`${values.binary} failed: ${run.stderr}`);
  const ours = JSON.parse(run.stdout);
  const theirs = referenceSpeed(loadReference(vocabulary).tokenizer);
  console.log(`| ${vocabulary.name} | ${ours.mb_per_s.toFixed(2)} | ${theirs.toFixed(2)} | ${(ours.mb_per_s / theirs).toFixed(2)}x | ${ours.load_ms.toFixed(0)} |`);
}
