// Failures users keep reporting against other servers, each pinned down by a test against
// `nanoserve serve` on the demo model (its chat template: "Role: content" lines).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import net from "node:net";
import { startServer, metrics, waitFor, settleAfterCancel } from "./harness.mjs";

let server;
before(async () => { server = await startServer([]); });
after(async () => { assert.equal((await server.stop()).code, 0); });

const post = async (path, body) => {
  const r = await fetch(server.url + path, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
  return { status: r.status, json: await r.json() };
};
const chat = async (body) => (await post("/v1/chat/completions", body)).json;

// Reads a streamed response into its parsed events.
async function streamEvents(path, body) {
  const r = await fetch(server.url + path, { method: "POST", body: JSON.stringify({ ...body, stream: true }) });
  const text = await r.text();
  assert.ok(text.endsWith("data: [DONE]\n\n"));
  return text.split("\n\n").filter((e) => e.startsWith("data: {")).map((e) => JSON.parse(e.slice(6)));
}

test("multi-turn chat reuses every full block of the earlier prompt and reply", async () => {
  const messages = [{ role: "system", content: "You are a preacher of the word." },
    { role: "user", content: "Tell me about the flood and Noah and the ark, and the animals two by two." }];
  const first = await chat({ messages, max_tokens: 60, temperature: 0 });
  const before = await metrics(server.url);
  const second = await chat({ messages: [...messages, first.choices[0].message, { role: "user", content: "And then?" }],
    max_tokens: 8, temperature: 0 });
  const after = await metrics(server.url);
  const earlier = first.usage.prompt_tokens + first.usage.completion_tokens;
  const fullBlocks = Math.floor(earlier / 16) * 16;
  assert.ok(fullBlocks >= 64, `the first turn spans ${earlier} tokens`);
  assert.equal(second.usage.prompt_tokens_details.cached_tokens, fullBlocks);
  assert.equal(after.nanoserve_prefix_cache_hits_total - before.nanoserve_prefix_cache_hits_total, fullBlocks / 16);
  assert.equal(after.nanoserve_prompt_tokens_computed_total - before.nanoserve_prompt_tokens_computed_total,
    second.usage.prompt_tokens - fullBlocks, "only the new tokens are computed");
});

test("a non-streaming client that disconnects stops its generation", async () => {
  const body = JSON.stringify({ prompt: "And", max_tokens: 1000, ignore_eos: true });
  const socket = net.connect(server.port, "127.0.0.1", () => socket.write(
    `POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: ${body.length}\r\n\r\n${body}`));
  socket.on("error", () => {});
  await waitFor(async () => (await metrics(server.url)).nanoserve_num_requests_running === 1);
  const before = (await metrics(server.url)).nanoserve_tokens_generated_total;
  socket.destroy();
  const { stopped, after: m } = await settleAfterCancel(server.url, 0);
  assert.equal(m.nanoserve_tokens_generated_total, stopped, "nothing is generated after the cancellation");
  assert.ok(stopped - before < 1000);
  assert.equal(m.nanoserve_kv_blocks_used, 0);
});

test("streaming never sends part of a stop string, and sends held-back text once it cannot match", async () => {
  const prompt = "And the LORD said unto Moses,";
  const full = (await post("/v1/completions", { prompt, max_tokens: 48, temperature: 0 })).json.choices[0].text;
  // A stop string that the text starts but never completes, and one that it does complete.
  const word = full.match(/ [A-Za-z]{4,}/)[0];
  const neverMatches = word + "XYZ";
  const stops = [neverMatches, full.slice(20, 26)];
  const cut = full.indexOf(stops[1]);
  const events = await streamEvents("/v1/completions", { prompt, max_tokens: 48, temperature: 0, stop: stops });
  const pieces = events.map((e) => e.choices[0]?.text ?? "");
  assert.equal(pieces.join(""), full.slice(0, cut), "everything before the stop string arrives, nothing of it");
  for (const piece of pieces) assert.ok(!piece.includes(stops[1]));
  assert.equal(events.at(-1).choices[0].finish_reason, "stop");
  // The unfinished match of the other stop string was released (it is part of the text above).
  assert.ok(full.slice(0, cut).includes(word));
});

test("a request that can never fit in the KV cache gets a 400 naming the numbers", async () => {
  const small = await startServer(["--kv-cache-memory", "0.0005"]);
  try {
    const r = await fetch(small.url + "/v1/completions", { method: "POST", body: JSON.stringify({ prompt: "Amen", max_tokens: 900 }) });
    assert.equal(r.status, 400);
    const message = (await r.json()).error.message;
    assert.match(message, /max_tokens \(900\) needs \d+ KV blocks of 16 tokens, but the pool holds only \d+ blocks/);
    assert.equal((await fetch(small.url + "/health")).status, 200, "the server lives on");
    assert.match(small.log(), /KV cache: .* blocks of 16 tokens = \d+ tokens \(\d+ full-context sequences of 1024\)/);
  } finally {
    await small.stop();
  }
});

test("temperature 0 gives the same text whatever else is in the batch", async () => {
  const prompt = "Blessed are the meek:";
  const alone = (await post("/v1/completions", { prompt, max_tokens: 24, temperature: 0 })).json.choices[0].text;
  const others = Array.from({ length: 12 }, (_, i) =>
    post("/v1/completions", { prompt: "A fortune: ".repeat(i + 1), max_tokens: 30, temperature: 1, seed: i }));
  const together = await Promise.all([post("/v1/completions", { prompt, max_tokens: 24, temperature: 0 }), ...others]);
  assert.equal(together[0].json.choices[0].text, alone);
});

test("n > 1 and logprobs work on chat completions, streamed too", async () => {
  const events = await streamEvents("/v1/chat/completions", { messages: [{ role: "user", content: "Hi" }], n: 2, max_tokens: 5,
    temperature: 0.8, seed: 3, logprobs: true, top_logprobs: 2 });
  const indices = new Set(events.map((e) => e.choices[0].index));
  assert.deepEqual([...indices].sort(), [0, 1]);
  const withLogprobs = events.filter((e) => e.choices[0].logprobs);
  assert.ok(withLogprobs.length >= 2);
  for (const e of withLogprobs) assert.equal(e.choices[0].logprobs.content[0].top_logprobs.length, 2);
});
