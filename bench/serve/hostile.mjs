#!/usr/bin/env node
// Everything issue 26 threw at the server, at once, on loopback: STREAMS streaming completions (a
// share hanging up at random points), UPLOADS keyless clients each pushing an 8 MiB body at a server
// that wants a key, and chat requests whose template loops forever when a message says "loop".
// Meanwhile a worker thread asks /health every 20 ms and /proc samples the server's memory.
// Asserts: /health always answers within --health-ms, resident memory stays under --rss-mib, every
// stream completes or ends with an explicit error, every hanging render is a 400, no KV block is
// left held, and SIGTERM exits 0.
//
// Usage: node bench/serve/hostile.mjs [--streams 1000] [--uploads 100] [--binary build/src/nanoserve]
import http from "node:http";
import net from "node:net";
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { startServer, pollHealth, settledMetrics } from "../../tests/server/harness.mjs";

const { values: opt } = parseArgs({
  options: {
    streams: { type: "string", default: "1000" },
    uploads: { type: "string", default: "100" },
    renders: { type: "string", default: "4" },
    disconnect: { type: "string", default: "0.2" },
    "max-tokens": { type: "string", default: "8" },
    "health-ms": { type: "string", default: "100" },
    "rss-mib": { type: "string", default: "768" },
    binary: { type: "string", default: "build/src/nanoserve" },
    seed: { type: "string", default: "1" },
  },
});
const streams = Number(opt.streams), uploads = Number(opt.uploads), renders = Number(opt.renders);
const maxTokens = Number(opt["max-tokens"]), healthBudgetMs = Number(opt["health-ms"]), rssBudgetMiB = Number(opt["rss-mib"]);
const key = "hostile-test-key";

let state = Number(opt.seed) >>> 0 || 1;
const random = () => ((state = (state * 1664525 + 1013904223) >>> 0) / 2 ** 32);

// The demo model, whose chat template loops without end on the word "loop".
const demo = new URL("../../models/demo/", import.meta.url).pathname;
const scratch = mkdtempSync(join(tmpdir(), "nanoserve-hostile-load-"));
for (const f of ["config.json", "generation_config.json", "tokenizer.json", "model.safetensors"]) copyFileSync(join(demo, f), join(scratch, f));
const tokenizerConfig = JSON.parse(readFileSync(join(demo, "tokenizer_config.json"), "utf8"));
tokenizerConfig.chat_template = "{% for m in messages %}{% if 'loop' in m.content %}{% for i in range(100000) %}" +
  "{% for j in range(100000) %}{% endfor %}{% endfor %}{% endif %}User: {{ m.content }}\n{% endfor %}Assistant:";
writeFileSync(join(scratch, "tokenizer_config.json"), JSON.stringify(tokenizerConfig));

const server = await startServer(["-m", scratch, "--api-key", key, "--max-queued", String(Math.max(16, streams * 2))], opt.binary);
const rssMiB = () => {
  try {
    return Number(readFileSync(`/proc/${server.proc.pid}/status`, "utf8").match(/VmRSS:\s+(\d+)/)[1]) / 1024;
  } catch {
    return NaN;
  }
};
const rssBefore = rssMiB();
let rssPeak = rssBefore;
const rssTimer = setInterval(() => (rssPeak = Math.max(rssPeak, rssMiB())), 20);

const health = pollHealth(server.url);

// One streaming completion; resolves with "completed", "error", "disconnected" or "broken".
function stream(hangUpAfterChunks) {
  const body = JSON.stringify({ prompt: "And the LORD said unto Moses,", max_tokens: maxTokens, temperature: 0.8, stream: true,
    ignore_eos: true });
  return new Promise((resolve) => {
    let data = "", chunks = 0, done = false;
    const finish = (outcome) => {
      if (!done) resolve(outcome);
      done = true;
    };
    const req = http.request(server.url + "/v1/completions", { method: "POST", agent: false, headers: {
      "Content-Type": "application/json", "Content-Length": Buffer.byteLength(body), Authorization: `Bearer ${key}` } }, (res) => {
      if (res.statusCode !== 200) {
        res.resume();
        return finish(res.statusCode >= 400 && res.statusCode < 600 ? "error" : "broken");
      }
      res.on("data", (d) => {
        data += d;
        if (hangUpAfterChunks !== null && ++chunks >= hangUpAfterChunks) {
          req.destroy();
          finish("disconnected");
        }
      });
      res.on("end", () => finish(data.endsWith("data: [DONE]\n\n") ? "completed" : "broken"));
      res.on("error", () => finish(hangUpAfterChunks !== null ? "disconnected" : "broken"));
    });
    req.on("error", () => finish(hangUpAfterChunks !== null ? "disconnected" : "broken"));
    req.end(body);
  });
}

// A stranger's 8 MiB upload without the key: resolves with the status line it got back.
function upload() {
  return new Promise((resolve) => {
    const socket = net.connect(server.port, "127.0.0.1");
    let answer = "";
    socket.on("data", (d) => (answer += d));
    socket.on("close", () => resolve(answer.split("\r\n")[0]));
    socket.on("error", () => {});
    socket.write("POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 8388608\r\n\r\n");
    const chunk = Buffer.alloc(1 << 20, "x");
    let sent = 0;
    const push = () => {
      while (sent < 8 && !socket.destroyed) {
        sent++;
        if (!socket.write(chunk)) return socket.once("drain", push);
      }
    };
    push();
  });
}

function hangingRender() {
  return fetch(server.url + "/v1/chat/completions", { method: "POST", headers: { "Content-Type": "application/json",
    Authorization: `Bearer ${key}` }, body: JSON.stringify({ messages: [{ role: "user", content: "please loop" }], max_tokens: 2 }) })
    .then(async (r) => ({ status: r.status, message: (await r.json()).error?.message ?? "" }));
}

const started = performance.now();
const [streamOutcomes, uploadAnswers, renderAnswers] = await Promise.all([
  Promise.all(Array.from({ length: streams }, () => stream(random() < Number(opt.disconnect) ? 1 + Math.floor(random() * maxTokens) : null))),
  Promise.all(Array.from({ length: uploads }, upload)),
  Promise.all(Array.from({ length: renders }, hangingRender)),
]);
const seconds = (performance.now() - started) / 1000;

const m = await settledMetrics(server.url);
const { worst, count, failed } = await health.stop();
clearInterval(rssTimer);
const exit = await server.stop();
rmSync(scratch, { recursive: true, force: true });

const tally = (list) => list.reduce((t, x) => ((t[x] = (t[x] ?? 0) + 1), t), {});
console.log(`${seconds.toFixed(1)} s: ${streams} streams ${JSON.stringify(tally(streamOutcomes))}; ${uploads} keyless 8 MiB uploads ` +
  `${JSON.stringify(tally(uploadAnswers))}; ${renders} hanging renders ${JSON.stringify(tally(renderAnswers.map((r) => r.status)))}`);
console.log(`/health: ${count} probes, slowest ${worst.toFixed(1)} ms, ${failed} failed`);
console.log(`server RSS: ${rssBefore.toFixed(0)} MiB before, peak ${rssPeak.toFixed(0)} MiB`);
console.log(`KV blocks used after: ${m.nanoserve_kv_blocks_used} of ${m.nanoserve_kv_blocks_total}; exit ${exit.code ?? exit.signal}`);

const failures = [];
if (streamOutcomes.includes("broken")) failures.push(`${tally(streamOutcomes).broken} streams broken`);
if (uploadAnswers.some((a) => !a.startsWith("HTTP/1.1 401"))) failures.push(`uploads answered ${JSON.stringify(tally(uploadAnswers))}`);
if (renderAnswers.some((r) => r.status !== 400 || !/units of work/.test(r.message))) failures.push(`renders answered ${JSON.stringify(renderAnswers)}`);
if (worst > healthBudgetMs || failed > 0) failures.push(`/health took ${worst.toFixed(1)} ms (budget ${healthBudgetMs}), ${failed} failed`);
if (rssPeak > rssBudgetMiB) failures.push(`RSS peaked at ${rssPeak.toFixed(0)} MiB (budget ${rssBudgetMiB})`);
if (m.nanoserve_kv_blocks_used !== 0) failures.push(`${m.nanoserve_kv_blocks_used} KV blocks still held`);
if (exit.code !== 0) failures.push(`the server exited with ${exit.code ?? exit.signal}`);
if (failures.length) {
  console.error(server.log().slice(-2000));
  console.error("FAIL: " + failures.join("; "));
  process.exit(1);
}
console.log("PASS");
