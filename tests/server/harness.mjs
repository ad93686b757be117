// Starts `nanoserve serve` on a free loopback port for a test file and reads the demo fixtures.
// NANOSERVE_BINARY and NANOSERVE_FIXTURES come from ctest (tests/CMakeLists.txt).
import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import net from "node:net";
import { Worker } from "node:worker_threads";

export const binary = process.env.NANOSERVE_BINARY;
export const fixtures = process.env.NANOSERVE_FIXTURES;

// Resolves once the server prints its address; rejects if it exits first. The benchmarks in
// bench/serve pass their own binary.
export function startServer(args = [], serverBinary = binary) {
  const proc = spawn(serverBinary, ["serve", "--port", "0", ...args], { stdio: ["ignore", "ignore", "pipe"] });
  let stderr = "";
  return new Promise((resolve, reject) => {
    proc.stderr.on("data", (d) => {
      stderr += d;
      const m = stderr.match(/at (http:\/\/127\.0\.0\.1:\d+)/);
      if (m && !proc.url) {
        proc.url = m[1];
        resolve(server(proc, () => stderr));
      }
    });
    proc.on("exit", (code) => reject(new Error(`nanoserve serve exited with ${code}:\n${stderr}`)));
  });
}

function server(proc, log) {
  const exited = new Promise((resolve) => proc.on("exit", (code, signal) => resolve({ code, signal })));
  return {
    url: proc.url,
    port: Number(new URL(proc.url).port),
    proc,
    log,
    exited,
    async stop() {
      if (proc.exitCode === null) proc.kill("SIGTERM");
      return exited;
    },
  };
}

// The Prometheus text of /metrics as {name or name{labels}: number}.
export async function metrics(url) {
  const text = await (await fetch(url + "/metrics")).text();
  const out = {};
  for (const line of text.split("\n")) {
    if (!line || line.startsWith("#")) continue;
    const at = line.lastIndexOf(" ");
    out[line.slice(0, at)] = Number(line.slice(at + 1));
  }
  return out;
}

// Waits (up to 5 s) until nothing runs or waits in the engine and every KV block is free, and
// returns the metrics then: cancellations reach the engine within a step.
export async function settledMetrics(url) {
  let m;
  for (let i = 0; i < 100; i++) {
    m = await metrics(url);
    if (m.nanoserve_kv_blocks_used === 0 && m.nanoserve_num_requests_running === 0 && m.nanoserve_num_requests_waiting === 0) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  return m;
}

// Asks /health every 20 ms from a worker thread (its own event loop: the load a test makes on the
// main thread does not count as the server's latency) until stop(), which resolves with
// {worst, count, failed}: the slowest answer in ms, the probes, and those that failed.
export function pollHealth(url) {
  const worker = new Worker(`
    const { parentPort, workerData } = require("node:worker_threads");
    let worst = 0, count = 0, failed = 0, done = false;
    parentPort.on("message", () => (done = true));
    (async () => {
      while (!done) {
        const start = performance.now();
        try {
          const r = await fetch(workerData + "/health");
          await r.text();
          if (r.status !== 200) failed++;
        } catch { failed++; }
        worst = Math.max(worst, performance.now() - start);
        count++;
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      parentPort.postMessage({ worst, count, failed });
    })();`, { eval: true, workerData: url });
  const result = new Promise((resolve, reject) => {
    worker.on("message", resolve);
    worker.on("error", reject);
  });
  return {
    async stop() {
      worker.postMessage("stop");
      const r = await result;
      await worker.terminate();  // its idle keep-alive connection would hold it open
      return r;
    },
  };
}

export async function waitFor(predicate, timeoutMs = 10000) {
  const start = Date.now();
  for (;;) {
    if (await predicate()) return;
    if (Date.now() - start > timeoutMs) throw new Error("timed out waiting for " + predicate);
    await new Promise((r) => setTimeout(r, 50));
  }
}

// After a client hangs up on a completion: waits until its call has ended as cancelled (the 499
// count passes cancelledBefore: the engine has sent the final event, so nothing more is generated
// for it) and nothing runs, reads the engine's generated-token counter, and reads the metrics again
// after quietMs, so a test can assert that nothing was generated since.
export async function settleAfterCancel(url, cancelledBefore, quietMs = 300) {
  const cancelled = '/v1/completions",status="499"}';
  await waitFor(async () => {
    const m = await metrics(url);
    return (m[`nanoserve_requests_total{endpoint="${cancelled}`] ?? 0) > cancelledBefore && m.nanoserve_num_requests_running === 0;
  });
  const stopped = (await metrics(url)).nanoserve_tokens_generated_total;
  await new Promise((r) => setTimeout(r, quietMs));
  return { stopped, after: await metrics(url) };
}

// An integer tensor of a safetensors file, as numbers.
export function readInts(path, name) {
  const bytes = readFileSync(path);
  const headerLength = Number(bytes.readBigUInt64LE(0));
  const header = JSON.parse(bytes.subarray(8, 8 + headerLength).toString());
  const t = header[name];
  if (!t || t.dtype !== "I64") throw new Error(`${path}: no I64 tensor ${name}`);
  const data = bytes.subarray(8 + headerLength + t.data_offsets[0], 8 + headerLength + t.data_offsets[1]);
  const out = [];
  for (let i = 0; i < data.length; i += 8) out.push(Number(data.readBigInt64LE(i)));
  return out;
}

// Sends raw bytes and collects whatever the server answers until it closes (or timeoutMs passes).
export function rawRequest(port, bytes, timeoutMs = 5000) {
  return new Promise((resolve) => {
    const socket = net.connect(port, "127.0.0.1");
    let data = "";
    const timer = setTimeout(() => { socket.destroy(); resolve({ data, closed: false }); }, timeoutMs);
    socket.on("data", (d) => (data += d));
    socket.on("close", () => { clearTimeout(timer); resolve({ data, closed: true }); });
    socket.on("error", () => {});
    socket.write(bytes);
  });
}
