#!/usr/bin/env node
// A bounded soak test of `nanoserve serve` on loopback: WORKERS clients loop for SECONDS over mixed
// traffic (completions and chat, streamed or not, some cancelled at random points, malformed and
// oversized bodies, unknown routes). Every answer must be a completion or an explicit error; the
// server's resident memory must plateau (the last third of the run may not grow past the first
// third's peak by more than --rss-slack MiB); at the end every KV block is free and it exits 0 on
// SIGTERM.
//
// Usage: node bench/serve/soak.mjs [--seconds 180] [--workers 32] [--binary build/src/nanoserve]
import { startServer, metrics } from "../../tests/server/harness.mjs";
import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";

const { values: opt } = parseArgs({
  options: {
    seconds: { type: "string", default: "180" },
    workers: { type: "string", default: "32" },
    binary: { type: "string", default: "build/src/nanoserve" },
    "rss-slack": { type: "string", default: "16" },
  },
});
const seconds = Number(opt.seconds), workers = Number(opt.workers), slackMiB = Number(opt["rss-slack"]);

let seed = 12345;
const random = () => ((seed = (seed * 1664525 + 1013904223) >>> 0) / 2 ** 32);
const pick = (items) => items[Math.floor(random() * items.length)];

const server = await startServer(["--max-body-bytes", "262144"], opt.binary);
const { url, proc } = server;
const exited = server.exited.then(({ code, signal }) => {
  if (code !== 0) console.error(`server exited with ${code ?? signal}:\n${server.log()}`);
  return code;
});

const rssMiB = () => {
  try {
    return Number(readFileSync(`/proc/${proc.pid}/status`, "utf8").match(/VmRSS:\s+(\d+)/)[1]) / 1024;
  } catch {
    return NaN;  // the server is gone; the exit code says why
  }
};

const kinds = {
  completion: () => ({ path: "/v1/completions", body: JSON.stringify({ prompt: pick(["And", "Blessed are", "A fortune:"]),
    max_tokens: 1 + Math.floor(random() * 40), temperature: random(), stream: random() < 0.5, n: random() < 0.2 ? 2 : 1,
    logprobs: random() < 0.2 ? 2 : null, stop: random() < 0.3 ? ["."] : null }) }),
  chat: () => ({ path: "/v1/chat/completions", body: JSON.stringify({ messages: [{ role: "user", content: pick(["Hi", "Who was Noah?"]) }],
    max_tokens: 1 + Math.floor(random() * 40), stream: random() < 0.5, stream_options: null }) }),
  badJson: () => ({ path: "/v1/completions", body: "{\"prompt\": [1, 2," }),
  wrongTypes: () => ({ path: "/v1/chat/completions", body: JSON.stringify({ messages: [{ role: 7, content: {} }], n: "x" }) }),
  huge: () => ({ path: "/v1/completions", body: JSON.stringify({ prompt: "x".repeat(300000) }) }),
  unknownRoute: () => ({ path: "/v1/embeddings", body: "{}" }),
};
const mix = ["completion", "completion", "completion", "chat", "chat", "badJson", "wrongTypes", "huge", "unknownRoute"];

const counts = { completed: 0, errors: 0, cancelled: 0, broken: 0 };
const brokenExamples = [];

async function one() {
  const kind = pick(mix);
  const { path, body } = kinds[kind]();
  const cancel = (kind === "completion" || kind === "chat") && random() < 0.2;
  const controller = new AbortController();
  if (cancel) setTimeout(() => controller.abort(), Math.floor(random() * 200));
  try {
    const r = await fetch(url + path, { method: "POST", body, signal: controller.signal, headers: { "Content-Type": "application/json" } });
    const text = await r.text();
    if (r.status !== 200) {
      const ok = JSON.parse(text).error?.message !== undefined;
      counts[ok ? "errors" : "broken"]++;
      if (!ok) brokenExamples.push(text.slice(0, 200));
    } else if (text.includes("finish_reason") && (!text.startsWith("data:") || text.endsWith("data: [DONE]\n\n"))) {
      counts.completed++;
    } else {
      counts.broken++;
      brokenExamples.push(text.slice(-200));
    }
  } catch (e) {
    if (cancel && e.name === "AbortError") counts.cancelled++;
    else {
      counts.broken++;
      brokenExamples.push(String(e));
    }
  }
}

const samples = [];
const start = Date.now();
const sampler = setInterval(() => samples.push({ t: (Date.now() - start) / 1000, rss: rssMiB() }), 1000);
await Promise.all(Array.from({ length: workers }, async () => {
  while (Date.now() - start < seconds * 1000) await one();
}));
clearInterval(sampler);

let m = {};
for (let i = 0; i < 100; i++) {
  m = await metrics(url);
  if (m.nanoserve_kv_blocks_used === 0 && m.nanoserve_num_requests_running === 0) break;
  await new Promise((r) => setTimeout(r, 50));
}
proc.kill("SIGTERM");
const code = await exited;

const third = Math.max(1, Math.floor(samples.length / 3));
const earlyPeak = Math.max(...samples.slice(0, third).map((s) => s.rss));
const latePeak = Math.max(...samples.slice(-third).map((s) => s.rss));
console.log(`${seconds}s, ${workers} workers: completed ${counts.completed}, explicit errors ${counts.errors}, cancelled ${counts.cancelled}, broken ${counts.broken}`);
console.log(`RSS MiB: first third peak ${earlyPeak.toFixed(1)}, last third peak ${latePeak.toFixed(1)}; samples ${samples.map((s) => s.rss.toFixed(0)).join(" ")}`);
console.log(`KV blocks used after: ${m.nanoserve_kv_blocks_used} of ${m.nanoserve_kv_blocks_total}; server exit ${code}`);
const failures = [];
if (counts.broken) failures.push(`${counts.broken} answers were neither a completion nor an explicit error: ${brokenExamples.slice(0, 3).join(" | ")}`);
if (latePeak > earlyPeak + slackMiB) failures.push(`RSS grew from ${earlyPeak.toFixed(1)} to ${latePeak.toFixed(1)} MiB`);
if (m.nanoserve_kv_blocks_used !== 0) failures.push(`${m.nanoserve_kv_blocks_used} KV blocks still held`);
if (code !== 0) failures.push(`server exited with ${code}`);
if (counts.completed === 0 || counts.errors === 0 || counts.cancelled === 0) failures.push("the mix did not exercise every outcome");
if (failures.length) {
  console.error("FAIL: " + failures.join("; "));
  process.exit(1);
}
console.log("PASS");
