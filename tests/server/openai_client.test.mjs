// The official `openai` client, unmodified but for its base URL, against `nanoserve serve` on the
// demo model. Greedy text is checked against the float64 Hugging Face reference continuation.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import OpenAI from "openai";
import { startServer, readInts, fixtures } from "./harness.mjs";

const KEY = "sk-test-key";
let server, client;
const reference = `${fixtures}/demo/reference.safetensors`;
const greedyPrompt = readInts(reference, "greedy_prompt");
const greedyTokens = readInts(reference, "greedy_tokens");

before(async () => {
  server = await startServer(["--api-key", KEY]);
  client = new OpenAI({ baseURL: server.url + "/v1", apiKey: KEY, maxRetries: 0 });
});
after(async () => {
  const { code } = await server.stop();
  assert.equal(code, 0);
});

async function detokenize(tokens) {
  const r = await fetch(server.url + "/detokenize", {
    method: "POST", headers: { Authorization: `Bearer ${KEY}` }, body: JSON.stringify({ tokens }),
  });
  return (await r.json()).prompt;
}

test("models lists the served model; retrieve finds it by id and refuses another", async () => {
  const models = await client.models.list();
  assert.deepEqual(models.data.map((m) => m.id), ["demo"]);
  assert.equal(models.data[0].max_model_len, 1024);
  assert.equal(models.data[0].owned_by, "nanoserve");
  const model = await client.models.retrieve("demo");
  assert.deepEqual({ id: model.id, object: model.object, max_model_len: model.max_model_len }, { id: "demo", object: "model", max_model_len: 1024 });
  assert.equal(model.created, models.data[0].created);
  await assert.rejects(client.models.retrieve("gpt-4o"), (e) => e instanceof OpenAI.NotFoundError && e.code === "model_not_found"
    && /the model 'gpt-4o' does not exist; this server serves 'demo'/.test(e.message));
});

test("a model id with a slash is found as the client escapes it", async () => {
  const s = await startServer(["--served-model-name", "kjv/demo-7m"]);
  try {
    const c = new OpenAI({ baseURL: s.url + "/v1", apiKey: "none", maxRetries: 0 });
    assert.equal((await c.models.retrieve("kjv/demo-7m")).id, "kjv/demo-7m");
  } finally {
    await s.stop();
  }
});

test("greedy completion equals the Hugging Face reference continuation", async () => {
  const r = await client.completions.create({ model: "demo", prompt: greedyPrompt, max_tokens: greedyTokens.length, temperature: 0 });
  assert.equal(r.object, "text_completion");
  assert.equal(r.choices[0].text, await detokenize(greedyTokens));
  assert.equal(r.choices[0].finish_reason, "length");
  assert.deepEqual(r.usage, { prompt_tokens: greedyPrompt.length, completion_tokens: greedyTokens.length,
    total_tokens: greedyPrompt.length + greedyTokens.length, prompt_tokens_details: { cached_tokens: 0 } });
});

test("streamed completion adds up to the whole one", async () => {
  const params = { model: "demo", prompt: "And the LORD said unto Moses,", max_tokens: 40, temperature: 0 };
  const whole = await client.completions.create(params);
  const stream = await client.completions.create({ ...params, stream: true });
  let text = "", finish = null;
  for await (const chunk of stream) {
    text += chunk.choices[0].text;
    finish = chunk.choices[0].finish_reason ?? finish;
  }
  assert.equal(text, whole.choices[0].text);
  assert.equal(finish, whole.choices[0].finish_reason);
});

test("echo puts the prompt before the completion", async () => {
  const prompt = "In the beginning";
  const r = await client.completions.create({ model: "demo", prompt, max_tokens: 8, temperature: 0, echo: true });
  const plain = await client.completions.create({ model: "demo", prompt, max_tokens: 8, temperature: 0 });
  assert.equal(r.choices[0].text, prompt + plain.choices[0].text);
});

test("several prompts times n samples give every choice its index", async () => {
  const r = await client.completions.create({ model: "demo", prompt: ["Blessed are", "Thou shalt"], n: 2, max_tokens: 6, temperature: 0.9, seed: 5 });
  assert.deepEqual(r.choices.map((c) => c.index), [0, 1, 2, 3]);
  for (const c of r.choices) assert.ok(c.text.length > 0);
});

test("chat: a reply, and the same reply streamed with usage at the end", async () => {
  const messages = [{ role: "system", content: "You are terse." }, { role: "user", content: "Who was Moses?" }];
  const whole = await client.chat.completions.create({ model: "demo", messages, max_tokens: 24, temperature: 0 });
  assert.equal(whole.object, "chat.completion");
  assert.equal(whole.choices[0].message.role, "assistant");
  assert.ok(whole.choices[0].message.content.length > 0);
  assert.ok(whole.usage.prompt_tokens > 10);

  const stream = await client.chat.completions.create({ model: "demo", messages, max_tokens: 24, temperature: 0, stream: true,
    stream_options: { include_usage: true } });
  const chunks = [];
  for await (const chunk of stream) chunks.push(chunk);
  assert.equal(chunks[0].choices[0].delta.role, "assistant");
  const text = chunks.filter((c) => c.choices.length).map((c) => c.choices[0].delta.content ?? "").join("");
  assert.equal(text, whole.choices[0].message.content);
  const last = chunks.at(-1);
  assert.deepEqual(last.choices, []);
  assert.equal(last.usage.completion_tokens, whole.usage.completion_tokens);
  assert.equal(chunks.at(-2).choices[0].finish_reason, whole.choices[0].finish_reason);
});

test("the same seed gives the same samples; another seed other ones", async () => {
  const params = { model: "demo", messages: [{ role: "user", content: "Tell me a fortune." }], n: 3, max_tokens: 16, temperature: 1 };
  const a = await client.chat.completions.create({ ...params, seed: 42 });
  const b = await client.chat.completions.create({ ...params, seed: 42 });
  const c = await client.chat.completions.create({ ...params, seed: 43 });
  const texts = (r) => r.choices.map((x) => x.message.content);
  assert.equal(a.choices.length, 3);
  assert.deepEqual(texts(a), texts(b));
  assert.notDeepEqual(texts(a), texts(c));
});

test("completion logprobs: the greedy token is the top one, alternatives listed", async () => {
  const r = await client.completions.create({ model: "demo", prompt: greedyPrompt, max_tokens: 8, temperature: 0, logprobs: 5 });
  const lp = r.choices[0].logprobs;
  assert.equal(lp.tokens.length, 8);
  assert.equal(lp.tokens.join(""), r.choices[0].text);
  for (let i = 0; i < 8; i++) {
    const top = Object.entries(lp.top_logprobs[i]);
    assert.equal(top.length, 5);
    assert.ok(lp.token_logprobs[i] <= 0);
    const best = Math.max(...top.map(([, v]) => v));
    assert.ok(Math.abs(best - lp.token_logprobs[i]) < 1e-6, "greedy picks the most likely token");
  }
  assert.equal(lp.text_offset[0], 0);
});

test("chat logprobs with top_logprobs carry token bytes", async () => {
  const r = await client.chat.completions.create({ model: "demo", messages: [{ role: "user", content: "Hi" }], max_tokens: 6,
    temperature: 0, logprobs: true, top_logprobs: 3 });
  const content = r.choices[0].logprobs.content;
  assert.equal(content.length, r.usage.completion_tokens);
  for (const entry of content) {
    assert.equal(entry.top_logprobs.length, 3);
    assert.equal(Buffer.from(entry.bytes).toString(), entry.token);
    assert.ok(Math.abs(entry.top_logprobs[0].logprob - entry.logprob) < 1e-6);
  }
});

test("a stop string ends the text before it", async () => {
  const params = { model: "demo", prompt: greedyPrompt, max_tokens: 32, temperature: 0 };
  const full = (await client.completions.create(params)).choices[0].text;
  const cut = full.indexOf(",");
  assert.ok(cut > 0, "the reference continuation has a comma: " + full);
  const r = await client.completions.create({ ...params, stop: [","] });
  assert.equal(r.choices[0].text, full.slice(0, cut));
  assert.equal(r.choices[0].finish_reason, "stop");
});

test("errors reach the client as its typed errors", async () => {
  await assert.rejects(client.completions.create({ model: "demo", prompt: "x", temperature: "hot" }), (e) => {
    assert.ok(e instanceof OpenAI.BadRequestError);
    assert.equal(e.param, "temperature");
    return true;
  });
  await assert.rejects(client.completions.create({ model: "demo", prompt: "x", top_p: 7 }), OpenAI.BadRequestError);
  await assert.rejects(client.completions.create({ model: "gpt-9", prompt: "x" }), (e) => {
    assert.ok(e instanceof OpenAI.NotFoundError);
    assert.equal(e.code, "model_not_found");
    return true;
  });
  await assert.rejects(client.completions.create({ model: "demo", prompt: "Amen. ".repeat(600) }), (e) => {
    assert.ok(e instanceof OpenAI.BadRequestError);
    assert.equal(e.code, "context_length_exceeded");
    return true;
  });
  const stranger = new OpenAI({ baseURL: server.url + "/v1", apiKey: "sk-wrong", maxRetries: 0 });
  await assert.rejects(stranger.models.list(), OpenAI.AuthenticationError);
});

// Issue 29: --reasoning-parser splits a thinking reply. The demo model does not think, so a regex
// makes it write the tags (the grammar engine), and the parser must take them apart, whole and
// streamed (reasoning deltas first, then content).
test("--reasoning-parser qwen3: <think>...</think> becomes reasoning_content, whole and streamed", async () => {
  const s = await startServer(["--reasoning-parser", "qwen3"]);
  try {
    const c = new OpenAI({ baseURL: s.url + "/v1", apiKey: "none", maxRetries: 0 });
    const request = { model: "demo", messages: [{ role: "user", content: "Who was Moses?" }], max_tokens: 64,
      guided_regex: "<think>[a-z ]{3,12}</think>[A-Za-z ]{3,12}" };
    const whole = await c.chat.completions.create(request);
    assert.match(whole.choices[0].message.reasoning_content, /^[a-z ]{3,12}$/);
    assert.match(whole.choices[0].message.content, /^[A-Za-z ]{3,12}$/);

    let reasoning = "", content = "", contentStarted = false;
    for await (const chunk of await c.chat.completions.create({ ...request, stream: true })) {
      const delta = chunk.choices[0]?.delta ?? {};
      if (delta.reasoning_content) {
        assert.ok(!contentStarted, "reasoning after content");
        reasoning += delta.reasoning_content;
      }
      if (delta.content) {
        contentStarted = true;
        content += delta.content;
      }
    }
    assert.match(reasoning, /^[a-z ]{3,12}$/);
    assert.match(content, /^[A-Za-z ]{3,12}$/);

    // A reply without the tag is all content.
    const plain = await c.chat.completions.create({ model: "demo", messages: request.messages, max_tokens: 8, temperature: 0 });
    assert.equal(plain.choices[0].message.reasoning_content, null);
    assert.ok(plain.choices[0].message.content.length > 0);
  } finally {
    await s.stop();
  }
});
