// Raw HTTP against `nanoserve serve`: malformed and oversized requests, routes, keys, slow clients,
// disconnects that cancel generation, a full queue, and shutdown on SIGTERM.
import { test } from "node:test";
import assert from "node:assert/strict";
import net from "node:net";
import { spawn } from "node:child_process";
import { binary, startServer, metrics, settledMetrics, rawRequest, settleAfterCancel, waitFor } from "./harness.mjs";

const post = (url, path, body, headers = {}) =>
  fetch(url + path, { method: "POST", headers: { "Content-Type": "application/json", ...headers }, body });

function assertOpenAiError(json, status) {
  assert.equal(typeof json.error.message, "string", `status ${status}: ${JSON.stringify(json)}`);
  assert.ok("type" in json.error && "param" in json.error && "code" in json.error);
}

// Opens a streaming completion and resolves with the socket once the first event has arrived.
function openStream(port, body) {
  return new Promise((resolve) => {
    const socket = net.connect(port, "127.0.0.1", () => {
      socket.write(`POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n` +
        `Content-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`);
    });
    let data = "";
    socket.on("data", (d) => {
      data += d;
      if (data.includes("data: ") && !socket.resolved) {
        socket.resolved = true;
        resolve(socket);
      }
    });
    socket.on("error", () => {});
  });
}

test("bad requests get OpenAI-shaped errors with the right status, and the server lives on", async () => {
  const s = await startServer(["--max-body-bytes", "65536"]);
  try {
    let r = await post(s.url, "/v1/completions", "{not json");
    assert.equal(r.status, 400);
    assertOpenAiError(await r.json(), 400);

    r = await post(s.url, "/v1/chat/completions", JSON.stringify({ messages: "hello" }));
    assert.equal(r.status, 400);
    assert.equal((await r.json()).error.param, "messages");

    r = await post(s.url, "/v1/chat/completions", JSON.stringify({ messages: [{ role: "wizard", content: "hi" }] }));
    assert.equal(r.status, 400);
    assert.match((await r.json()).error.message, /unknown role 'wizard'/);

    // A "type" that is not a string is a 400 naming the field, not a JSON type error (500).
    r = await post(s.url, "/v1/chat/completions",
      JSON.stringify({ messages: [{ role: "user", content: "x" }], response_format: { type: ["text"] } }));
    assert.equal(r.status, 400);
    assert.equal((await r.json()).error.param, "response_format");
    r = await post(s.url, "/v1/chat/completions",
      JSON.stringify({ messages: [{ role: "user", content: [{ type: 7, text: "x" }] }] }));
    assert.equal(r.status, 400);
    assert.equal((await r.json()).error.param, "messages[0].content");

    r = await post(s.url, "/v1/completions", JSON.stringify({ prompt: "x", n: 1000 }));
    assert.equal(r.status, 400);
    assert.match((await r.json()).error.message, /n must be between 1 and 128/);

    r = await post(s.url, "/v1/completions", JSON.stringify({ prompt: [1, 2, 99999] }));
    assert.equal(r.status, 400);
    assert.match((await r.json()).error.message, /outside the vocabulary/);

    r = await post(s.url, "/v1/completions", JSON.stringify({ prompt: "x".repeat(70000) }));
    assert.equal(r.status, 413);
    assertOpenAiError(await r.json(), 413);

    r = await fetch(s.url + "/v1/nothing-here");
    assert.equal(r.status, 404);
    assertOpenAiError(await r.json(), 404);

    r = await fetch(s.url + "/v1/completions");
    assert.equal(r.status, 405);

    const garbage = await rawRequest(s.port, "HELLO THERE\r\n\r\n");
    assert.match(garbage.data, /^HTTP\/1\.1 400/);
    assert.ok(garbage.closed);

    r = await fetch(s.url + "/health");
    assert.equal(r.status, 200);
    const m = await metrics(s.url);
    assert.equal(m['nanoserve_requests_total{endpoint="/v1/completions",status="413"}'], undefined,
      "a body refused by the parser never reaches a route");
    assert.ok(m['nanoserve_requests_total{endpoint="/v1/completions",status="400"}'] >= 3);
  } finally {
    assert.equal((await s.stop()).code, 0);
  }
});

test("an API key guards /v1 but not /health; it is compared whole", async () => {
  const s = await startServer(["--api-key", "secret-123"]);
  try {
    assert.equal((await fetch(s.url + "/v1/models")).status, 401);
    assert.equal((await fetch(s.url + "/v1/models", { headers: { Authorization: "Bearer secret-12" } })).status, 401);
    assert.equal((await fetch(s.url + "/v1/models", { headers: { Authorization: "Bearer secret-1234" } })).status, 401);
    const bad = await fetch(s.url + "/v1/models", { headers: { Authorization: "secret-123" } });
    assert.equal(bad.status, 401);
    assert.equal((await bad.json()).error.code, "invalid_api_key");
    assert.equal((await fetch(s.url + "/v1/models", { headers: { Authorization: "Bearer secret-123" } })).status, 200);
    assert.equal((await fetch(s.url + "/health")).status, 200);
  } finally {
    await s.stop();
  }
});

test("a slow client is disconnected without holding up others", async () => {
  const s = await startServer(["--request-timeout", "1"]);
  try {
    const started = Date.now();
    const slow = rawRequest(s.port, "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"pro", 8000);
    const r = await post(s.url, "/v1/completions", JSON.stringify({ prompt: "Amen", max_tokens: 4 }));
    assert.equal(r.status, 200);
    const result = await slow;
    assert.ok(result.closed, "the server closed the stalled connection");
    const waited = Date.now() - started;
    assert.ok(waited >= 900 && waited < 5000, `closed after ${waited} ms`);
  } finally {
    await s.stop();
  }
});

test("a client that disconnects mid-stream stops its generation and frees its blocks", async () => {
  const s = await startServer([]);
  try {
    const body = JSON.stringify({ prompt: "And", max_tokens: 1000, ignore_eos: true, stream: true });
    const socket = await openStream(s.port, body);
    socket.destroy();
    const { stopped: first, after: m } = await settleAfterCancel(s.url, 0);
    assert.equal(m.nanoserve_tokens_generated_total, first, "no tokens are generated after the disconnect");
    assert.ok(first < 1000, `generation stopped early (${first} tokens)`);
    assert.equal(m.nanoserve_kv_blocks_used, 0);
    assert.equal(m['nanoserve_requests_total{endpoint="/v1/completions",status="499"}'], 1);
  } finally {
    await s.stop();
  }
});

test("a full queue answers 503 with Retry-After", async () => {
  const s = await startServer(["--max-queued", "1"]);
  try {
    const socket = await openStream(s.port, JSON.stringify({ prompt: "And", max_tokens: 1000, ignore_eos: true, stream: true }));
    const r = await post(s.url, "/v1/completions", JSON.stringify({ prompt: "x", max_tokens: 2 }));
    assert.equal(r.status, 503);
    assert.equal(r.headers.get("retry-after"), "1");
    assert.equal((await r.json()).error.code, "overloaded");
    socket.destroy();
  } finally {
    await s.stop();
  }
});

// Streams a completion of maxTokens, sends SIGTERM 100 ms in, and returns the whole streamed text
// after checking that the server exited 0.
async function streamThroughSigterm(serverArgs, maxTokens) {
  const s = await startServer(serverArgs);
  const body = JSON.stringify({ prompt: "And", max_tokens: maxTokens, ignore_eos: true, stream: true });
  const response = post(s.url, "/v1/completions", body);
  await new Promise((r) => setTimeout(r, 100));
  s.proc.kill("SIGTERM");
  const text = await (await response).text();
  assert.equal((await s.exited).code, 0);
  return text;
}

test("SIGTERM lets requests in flight finish, then exits 0", async () => {
  const text = await streamThroughSigterm([], 300);
  assert.match(text, /"finish_reason":"length"/);
  assert.ok(text.endsWith("data: [DONE]\n\n"));
});

test("after the grace period, SIGTERM ends streams with a final event", async () => {
  const text = await streamThroughSigterm(["--shutdown-grace", "0.2"], 1000);
  assert.match(text, /"finish_reason":"abort"/);
  assert.ok(text.endsWith("data: [DONE]\n\n"));
});

test("--host takes a name, resolved before the model loads", async () => {
  const s = await startServer(["--host", "localhost"]);
  try {
    assert.equal((await fetch(s.url + "/health")).status, 200);
  } finally {
    await s.stop();
  }
});

// One log line per request (issue 30): text by default with probes left out, JSON objects with
// --log-format json, probes too at --log-level debug, nothing below warning at --log-level warning.
test("each request is one log line, as text or JSON, at the chosen level", async () => {
  const body = JSON.stringify({ messages: [{ role: "user", content: "Who was Moses?" }], max_tokens: 4 });
  const requests = async (url) => {
    await fetch(url + "/health");
    await post(url, "/v1/chat/completions", body);
    await fetch(url + "/no/such/route?key=secret");
  };
  const lines = (s) => s.log().split("\n").filter((l) => l.length > 0);

  const text = await startServer([]);
  await requests(text.url);
  await text.stop();
  const textLines = lines(text);
  assert.ok(textLines.some((l) => /^POST \/v1\/chat\/completions 200 in [\d.]+ ms: \d+ prompt tokens \(0 cached\), 4 generated, the first after [\d.]+ ms$/.test(l)),
    textLines.join("\n"));
  assert.ok(textLines.includes(textLines.find((l) => /^GET \/no\/such\/route 404 in [\d.]+ ms$/.test(l))), textLines.join("\n"));
  assert.ok(!textLines.some((l) => l.includes("/health")), "a successful probe is logged at debug");
  assert.ok(!textLines.some((l) => l.includes("secret")), "the query string is not logged");

  const json = await startServer(["--log-format", "json", "--log-level", "debug"]);
  await requests(json.url);
  await json.stop();
  const records = lines(json).map((l) => JSON.parse(l));  // every line, start-up included, is JSON
  for (const r of records) assert.match(r.time, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
  const chat = records.find((r) => r.path === "/v1/chat/completions");
  assert.equal(chat.level, "info");
  assert.equal(chat.method, "POST");
  assert.equal(chat.status, 200);
  assert.equal(chat.completion_tokens, 4);
  assert.ok(chat.prompt_tokens > 0 && chat.ttft_ms > 0 && chat.duration_ms >= chat.ttft_ms, JSON.stringify(chat));
  assert.equal(records.find((r) => r.path === "/health").level, "debug");
  assert.equal(records.find((r) => r.path === "/no/such/route").status, 404);

  // At warning nothing names the port, so the test picks one and waits for /health.
  const port = await new Promise((resolve) => {
    const probe = net.createServer().listen(0, "127.0.0.1", () => {
      const p = probe.address().port;
      probe.close(() => resolve(p));
    });
  });
  const proc = spawn(binary, ["serve", "--port", String(port), "--log-level", "warning"], { stdio: ["ignore", "ignore", "pipe"] });
  let quietLog = "";
  proc.stderr.on("data", (d) => (quietLog += d));
  const url = `http://127.0.0.1:${port}`;
  await waitFor(async () => (await fetch(url + "/health").catch(() => null))?.ok);
  await requests(url);
  proc.kill("SIGTERM");
  await new Promise((resolve) => proc.on("exit", resolve));
  const quiet = { log: () => quietLog };
  assert.deepEqual(lines(quiet), [], "start-up and requests are info");
});

// Issue 30: "ready in 0.00s" was printed before the KV pool was made (seconds with a large pool).
// The ready line now comes when the server answers: /health at once, and its time covers the start.
test("the ready line comes once the server answers, and counts the whole start", async () => {
  const spawned = performance.now();
  const s = await startServer(["--kv-cache-memory", "1"]);
  const elapsed = (performance.now() - spawned) / 1000;
  try {
    assert.equal((await fetch(s.url + "/health")).status, 200);
    const [, ready] = s.log().match(/; ready in ([\d.]+)s\n/);
    assert.ok(Number(ready) > 0 && Number(ready) <= elapsed + 0.01, `ready in ${ready}s, ${elapsed}s since the spawn`);
    const kvLine = s.log().indexOf("KV cache:"), readyLine = s.log().indexOf("ready in");
    assert.ok(kvLine >= 0 && kvLine < readyLine, s.log());
  } finally {
    await s.stop();
  }
});

// Issue 29: --max-model-len (-c, --ctx-size) caps the context the server promises and enforces.
test("--max-model-len caps the context: listed, enforced, and a chat's default reply fits it", async () => {
  const s = await startServer(["--max-model-len", "128"]);
  try {
    const models = await (await fetch(s.url + "/v1/models")).json();
    assert.equal(models.data[0].max_model_len, 128);
    const long = await post(s.url, "/v1/completions", JSON.stringify({ prompt: "In the beginning", max_tokens: 200 }));
    assert.equal(long.status, 400);
    assert.match((await long.json()).error.message, /more than the context of 128 \(--max-model-len\)/);
    const chat = await (await post(s.url, "/v1/chat/completions", JSON.stringify({
      messages: [{ role: "user", content: "Who was Moses?" }], ignore_eos: true, temperature: 0 }))).json();
    assert.equal(chat.choices[0].finish_reason, "length");
    assert.equal(chat.usage.prompt_tokens + chat.usage.completion_tokens, 128);
  } finally {
    await s.stop();
  }
});

// Issue 29: the metrics routers read (Gateway API Inference Extension, llm-d), under vLLM's names,
// read with curl as a Prometheus scraper would: a running stream is counted and holds KV blocks; a
// prompt sent twice is found in the prefix cache, counted in tokens.
test("vLLM-named metrics: requests running and waiting, KV usage, cache layout, prefix hits in tokens", async () => {
  const { execFileSync } = await import("node:child_process");
  const scrape = (url) => {
    const out = {};
    for (const line of execFileSync("curl", ["-sf", url + "/metrics"], { encoding: "utf8" }).split("\n")) {
      if (line.startsWith("vllm:")) out[line.slice(0, line.lastIndexOf(" "))] = Number(line.slice(line.lastIndexOf(" ") + 1));
    }
    return out;
  };
  const s = await startServer(["--served-model-name", "kjv"]);
  try {
    const socket = await openStream(s.port, JSON.stringify({ prompt: "And God said", max_tokens: 1000, ignore_eos: true, stream: true }));
    const busy = scrape(s.url);
    socket.destroy();
    assert.equal(busy['vllm:num_requests_running{model_name="kjv"}'], 1);
    assert.equal(busy['vllm:num_requests_waiting{model_name="kjv"}'], 0);
    const usage = busy['vllm:kv_cache_usage_perc{model_name="kjv"}'];
    assert.ok(usage > 0 && usage < 0.01, String(usage));  // a block or a few of 2048
    assert.equal(busy['vllm:gpu_cache_usage_perc{model_name="kjv"}'], usage);
    assert.equal(busy['vllm:cache_config_info{model_name="kjv",block_size="16",num_gpu_blocks="2048"}'], 1);

    const prompt = "In the beginning God created the heaven and the earth. And the earth was without form, and void; and darkness was upon the face of the deep.";
    for (let i = 0; i < 2; i++) await post(s.url, "/v1/completions", JSON.stringify({ prompt, max_tokens: 2 }));
    const after = scrape(s.url);
    const nanoserve = await settledMetrics(s.url);
    assert.ok(after['vllm:prefix_cache_hits_total{model_name="kjv"}'] >= 16);
    assert.equal(after['vllm:prefix_cache_hits_total{model_name="kjv"}'], 16 * nanoserve.nanoserve_prefix_cache_hits_total);
    assert.equal(after['vllm:prefix_cache_queries_total{model_name="kjv"}'], 16 * nanoserve.nanoserve_prefix_cache_queries_total);
    assert.equal(after['vllm:generation_tokens_total{model_name="kjv"}'], nanoserve.nanoserve_generation_tokens_total);
    assert.equal(after['vllm:prompt_tokens_total{model_name="kjv"}'], nanoserve.nanoserve_prompt_tokens_total);
    assert.equal(after['vllm:num_preemptions_total{model_name="kjv"}'], 0);
  } finally {
    await s.stop();
  }
});

// Issue 29: serve --chat-template replaces the model's template, and chat_template_kwargs reach it
// (Qwen 3's enable_thinking is such a variable).
test("serve --chat-template, with chat_template_kwargs passed to the template", async () => {
  const template = "{% if enable_thinking is defined and not enable_thinking %}<think></think>{% endif %}" +
    "{% for m in messages %}[{{ m.role }}] {{ m.content }}{% endfor %}";
  const s = await startServer(["--chat-template", template]);
  try {
    const prompt = async (extra) => {
      const ids = (await (await post(s.url, "/tokenize", JSON.stringify({ messages: [{ role: "user", content: "Hi" }], ...extra }))).json()).tokens;
      return (await (await post(s.url, "/detokenize", JSON.stringify({ tokens: ids }))).json()).prompt;
    };
    assert.equal(await prompt({}), "[user] Hi");
    assert.equal(await prompt({ chat_template_kwargs: { enable_thinking: false } }), "<think></think>[user] Hi");
    const reply = await post(s.url, "/v1/chat/completions", JSON.stringify({ messages: [{ role: "user", content: "Hi" }], max_tokens: 2,
      chat_template_kwargs: { enable_thinking: false } }));
    assert.equal(reply.status, 200);
    assert.equal((await reply.json()).usage.prompt_tokens, (await (await post(s.url, "/tokenize", JSON.stringify({
      messages: [{ role: "user", content: "Hi" }], chat_template_kwargs: { enable_thinking: false } }))).json()).count);
  } finally {
    await s.stop();
  }
});

// Issue 30: vLLM's `serve MODEL` form names the model as -m does.
test("serve MODEL, as vLLM takes it", async () => {
  const { fileURLToPath } = await import("node:url");
  const demo = fileURLToPath(new URL("../../models/demo", import.meta.url));
  const s = await startServer([demo, "--served-model-name", "positional"]);
  try {
    const models = await (await fetch(s.url + "/v1/models")).json();
    assert.equal(models.data[0].id, "positional");
    assert.match(s.log(), new RegExp(`loaded ${demo.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")} \\(llama family`));
  } finally {
    await s.stop();
  }
});
