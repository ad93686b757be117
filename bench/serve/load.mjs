#!/usr/bin/env node
// A bounded load test of `nanoserve serve` on loopback: CLIENTS streaming completions at once, a
// share of them hanging up at a random point. It asserts that every request either completed or
// got an explicit error, and that afterwards /metrics shows every KV block free and nothing
// running. Prints requests/s and time-to-first-token percentiles.
//
// Usage: node bench/serve/load.mjs [--clients 1000] [--disconnect 0.1] [--max-tokens 16]
//                                  [--url http://127.0.0.1:8080 | --binary build/src/nanoserve]
import http from "node:http";
import { parseArgs } from "node:util";
import { startServer, settledMetrics } from "../../tests/server/harness.mjs";

const { values: opt } = parseArgs({
  options: {
    clients: { type: "string", default: "1000" },
    disconnect: { type: "string", default: "0.1" },
    "max-tokens": { type: "string", default: "16" },
    url: { type: "string" },
    binary: { type: "string", default: "build/src/nanoserve" },
    seed: { type: "string", default: "1" },
  },
});
const clients = Number(opt.clients), disconnectShare = Number(opt.disconnect), maxTokens = Number(opt["max-tokens"]);

// A small deterministic generator, so a run can be repeated.
let state = Number(opt.seed) >>> 0 || 1;
const random = () => ((state = (state * 1664525 + 1013904223) >>> 0) / 2 ** 32);

const prompts = ["And the LORD said unto Moses,", "Blessed are the meek:", "A fortune for you:", "In the beginning",
  "The wise man says", "Thou shalt not"];

// One streaming request. Resolves with {outcome, ttft}: "completed" (finish_reason and [DONE]),
// "error" (an HTTP error or an error event, with its message), "disconnected" (we hung up), or
// "broken" (anything else: the failure this test exists to catch).
function streamRequest(url, hangUpAfterChunks) {
  const body = JSON.stringify({ prompt: prompts[Math.floor(random() * prompts.length)], max_tokens: maxTokens,
    temperature: 0.8, stream: true, ignore_eos: true });
  const start = performance.now();
  return new Promise((resolve) => {
    let ttft = null, chunks = 0, data = "", done = false;
    const finish = (outcome, extra = {}) => {
      if (done) return;
      done = true;
      resolve({ outcome, ttft, ...extra });
    };
    const req = http.request(url + "/v1/completions", { method: "POST", agent: false,
      headers: { "Content-Type": "application/json", "Content-Length": Buffer.byteLength(body) } }, (res) => {
      if (res.statusCode !== 200) {
        let text = "";
        res.on("data", (d) => (text += d));
        res.on("end", () => {
          try { finish("error", { status: res.statusCode, message: JSON.parse(text).error.message }); }
          catch { finish("broken", { status: res.statusCode, message: text }); }
        });
        return;
      }
      res.on("data", (d) => {
        data += d;
        if (ttft === null && data.includes('"text":"')) ttft = performance.now() - start;
        chunks += 1;
        if (hangUpAfterChunks !== null && chunks >= hangUpAfterChunks) {
          req.destroy();
          finish("disconnected");
        }
      });
      res.on("end", () => {
        if (data.includes('"error"')) finish("error", { message: data });
        else if (data.includes('"finish_reason":"') && data.endsWith("data: [DONE]\n\n")) finish("completed");
        else finish("broken", { message: data.slice(-300) });
      });
      res.on("error", () => finish(hangUpAfterChunks !== null ? "disconnected" : "broken"));
    });
    req.on("error", (e) => finish(hangUpAfterChunks !== null ? "disconnected" : "broken", { message: e.message }));
    req.end(body);
  });
}

const percentile = (values, p) => {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))] : NaN;
};

const server = opt.url ? { url: opt.url } : await startServer(["--max-queued", String(clients * 2)], opt.binary);
const started = performance.now();
const results = await Promise.all(Array.from({ length: clients }, () =>
  streamRequest(server.url, random() < disconnectShare ? 1 + Math.floor(random() * maxTokens) : null)));
const seconds = (performance.now() - started) / 1000;

// Cancellations reach the engine within a step; give it a moment, then everything must be free.
const m = await settledMetrics(server.url);
if (server.proc) server.proc.kill("SIGTERM");

const count = (o) => results.filter((r) => r.outcome === o).length;
const ttfts = results.filter((r) => r.ttft !== null).map((r) => r.ttft);
const broken = results.filter((r) => r.outcome === "broken");
console.log(`clients ${clients}, ${(disconnectShare * 100).toFixed(0)}% hanging up, max_tokens ${maxTokens}`);
console.log(`completed ${count("completed")}, explicit errors ${count("error")}, disconnected ${count("disconnected")}, broken ${broken.length}`);
console.log(`${seconds.toFixed(2)} s, ${(count("completed") / seconds).toFixed(1)} completed requests/s`);
console.log(`TTFT p50 ${percentile(ttfts, 0.5).toFixed(1)} ms, p99 ${percentile(ttfts, 0.99).toFixed(1)} ms`);
console.log(`KV blocks used after: ${m.nanoserve_kv_blocks_used} of ${m.nanoserve_kv_blocks_total}, running ${m.nanoserve_num_requests_running}, waiting ${m.nanoserve_num_requests_waiting}`);
const failures = [];
if (broken.length) failures.push(`${broken.length} requests neither completed nor got an explicit error, e.g. ${JSON.stringify(broken[0])}`);
if (m.nanoserve_kv_blocks_used !== 0) failures.push(`${m.nanoserve_kv_blocks_used} KV blocks still held`);
if (m.nanoserve_num_requests_running !== 0 || m.nanoserve_num_requests_waiting !== 0) failures.push("sequences left in the engine");
if (failures.length) {
  console.error("FAIL: " + failures.join("; "));
  process.exit(1);
}
console.log("PASS");
