// POST /v1/embeddings with the clients that call it, unmodified but for their base URL: the
// official `openai` client (embeddings.create, which asks for base64 by default), LangChain's
// OpenAIEmbeddings and the Vercel AI SDK's embed/embedMany. The demo model serves with
// `--task embed --pooling mean`; the tiny sentence-transformers fixtures (embed_qwen3,
// embed_gte_qwen2) serve as their modules.json says, against the vectors sentence-transformers'
// modules computed, and an architecture fixture laid out as a sentence-transformers directory, against
// Hugging Face's hidden states. Bad input gets a 400 naming it.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import OpenAI from "openai";
import { OpenAIEmbeddings } from "@langchain/openai";
import { embed, embedMany } from "ai";
import { createOpenAI } from "@ai-sdk/openai";
import { startServer, fixtures } from "./harness.mjs";

let server, client;

before(async () => {
  server = await startServer(["--task", "embed", "--pooling", "mean"]);
  client = new OpenAI({ baseURL: server.url + "/v1", apiKey: "none", maxRetries: 0 });
});
after(async () => {
  const { code } = await server.stop();
  assert.equal(code, 0);
});

const texts = ["And the LORD said unto Moses,", "A fortune cookie: you will find it", "In the beginning"];

async function post(body, url = server.url) {
  const r = await fetch(url + "/v1/embeddings", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
  return { status: r.status, body: await r.json() };
}

const norm = (v) => Math.sqrt(v.reduce((s, x) => s + x * x, 0));
const cosine = (a, b) => a.reduce((s, x, i) => s + x * b[i], 0) / (norm(a) * norm(b));
// The float32 value a JSON number stands for: the float form and the base64 bytes must agree to the bit.
const f32 = (v) => Array.from(Float32Array.from(v));

async function floats(input) {
  const r = await post({ model: "demo", input, encoding_format: "float" });
  assert.equal(r.status, 200, JSON.stringify(r.body));
  return r.body;
}

test("float vectors: one per input in order, unit length, usage counts the tokens", async () => {
  const body = await floats(texts);
  assert.equal(body.object, "list");
  assert.equal(body.model, "demo");
  assert.deepEqual(body.data.map((d) => [d.object, d.index]), [["embedding", 0], ["embedding", 1], ["embedding", 2]]);
  let tokens = 0;
  for (const t of texts) tokens += (await (await fetch(server.url + "/tokenize", { method: "POST", body: JSON.stringify({ prompt: t }) })).json()).count;
  assert.deepEqual(body.usage, { prompt_tokens: tokens, total_tokens: tokens });
  for (const d of body.data) {
    assert.equal(d.embedding.length, 256);
    assert.ok(Math.abs(norm(d.embedding) - 1) < 1e-5);
  }
  // Each vector is the input's alone, whatever it is batched with.
  const alone = await floats(texts[1]);
  assert.deepEqual(alone.data[0].embedding, body.data[1].embedding);
  assert.ok(cosine(body.data[0].embedding, body.data[1].embedding) < 0.999);
});

test("token ids, and lists of them, embed as the text they tokenize from", async () => {
  const ids = await Promise.all(texts.map(async (t) =>
    (await (await fetch(server.url + "/tokenize", { method: "POST", body: JSON.stringify({ prompt: t }) })).json()).tokens));
  const fromText = await floats(texts);
  const fromIds = await floats(ids);
  assert.deepEqual(fromIds.data.map((d) => d.embedding), fromText.data.map((d) => d.embedding));
  const one = await floats(ids[2]);
  assert.deepEqual(one.data[0].embedding, fromText.data[2].embedding);
});

test("openai: embeddings.create (base64 on the wire) gives the float vectors to the bit", async () => {
  const expected = (await floats(texts)).data.map((d) => d.embedding);
  const r = await client.embeddings.create({ model: "demo", input: texts });
  assert.deepEqual(r.data.map((d) => d.embedding), expected.map(f32));
  const b64 = await post({ input: texts[0], encoding_format: "base64" });
  const bytes = Buffer.from(b64.body.data[0].embedding, "base64");
  assert.equal(bytes.length, 256 * 4);
  assert.deepEqual(Array.from(new Float32Array(bytes.buffer, bytes.byteOffset, 256)), f32(expected[0]));
  const float = await client.embeddings.create({ model: "demo", input: texts[0], encoding_format: "float" });
  assert.deepEqual(float.data[0].embedding, expected[0]);
  assert.equal(r.usage.prompt_tokens, (await floats(texts)).usage.prompt_tokens);
});

test("LangChain OpenAIEmbeddings: embedDocuments and embedQuery", async () => {
  const expected = (await floats(texts)).data.map((d) => f32(d.embedding));
  const embeddings = new OpenAIEmbeddings({ model: "demo", apiKey: "none", configuration: { baseURL: server.url + "/v1" }, maxRetries: 0 });
  assert.deepEqual(await embeddings.embedDocuments(texts), expected);
  assert.deepEqual(await embeddings.embedQuery(texts[2]), expected[2]);
});

test("AI SDK: embed and embedMany", async () => {
  const expected = (await floats(texts)).data.map((d) => d.embedding);
  const openai = createOpenAI({ baseURL: server.url + "/v1", apiKey: "none" });
  const one = await embed({ model: openai.embedding("demo"), value: texts[0], maxRetries: 0 });
  assert.deepEqual(one.embedding, expected[0]);
  assert.ok(one.usage.tokens > 0);
  const many = await embedMany({ model: openai.embedding("demo"), values: texts, maxRetries: 0 });
  assert.deepEqual(many.embeddings, expected);
});

test("bad input: a 400 naming what is wrong", async () => {
  const cases = [
    [{ input: "" }, /input: an empty string has no embedding/],
    [{ input: [] }, /input: an empty list/],
    [{ input: ["fine", ""] }, /input\[1\] is an empty string/],
    [{ input: ["fine", 3] }, /input\[1\] is 3, not a string or a list of token ids/],
    [{ input: [[1, 2], []] }, /input\[1\] is an empty list of token ids/],
    [{ input: [1, "x"] }, /holds "x", not a token id/],
    [{ input: Array(10000).fill("x") }, /input: 10000 inputs, more than the 2048 one request may hold/],
    [{ input: [[5, 999999]] }, /input\[0\]: token id 999999 is outside the vocabulary of 4096/],
    [{ input: Array(2000).fill(5) }, /2000 tokens, more than the model's context of 1024/],
    [{ input: "x", encoding_format: "int8" }, /encoding_format: "int8" is not 'float' or 'base64'/],
    [{ input: "x", dimensions: 0 }, /dimensions: 0 is not a positive integer/],
    [{ input: "x", dimensions: 16 }, /dimensions: this model's vectors cannot be shortened/],
    [{}, /input: required/],
  ];
  for (const [body, message] of cases) {
    const r = await post(body);
    assert.equal(r.status, 400, JSON.stringify(body).slice(0, 80));
    assert.match(r.body.error.message, message);
  }
  const wrong = await post({ model: "gpt-4", input: "x" });
  assert.equal(wrong.status, 404);
  const chat = await fetch(server.url + "/v1/chat/completions", { method: "POST", body: JSON.stringify({ messages: [{ role: "user", content: "hi" }] }) });
  assert.equal(chat.status, 400);
  assert.match((await chat.json()).error.message, /for embeddings \(--task embed\): use POST \/v1\/embeddings/);
});

test("a generation server says how to serve embeddings", async () => {
  const generating = await startServer([]);
  try {
    const r = await post({ input: "x" }, generating.url);
    assert.equal(r.status, 400);
    assert.match(r.body.error.message, /start it with `--task embed`/);
  } finally {
    await generating.stop();
  }
});

// The qwen3 architecture fixture laid out as an embedding model ships (Qwen3-Embedding): the base
// model's weights without the "model." prefix, modules.json with last-token pooling and Normalize,
// and is_matryoshka in its config. Served as its modules.json says (no --task), its vectors are
// Hugging Face's final norm rows of the fixture prompt, pooled and normalized.
function sentenceTransformersDir() {
  const dir = mkdtempSync(path.join(tmpdir(), "nanoserve-st-"));
  const config = JSON.parse(readFileSync(`${fixtures}/qwen3/config.json`, "utf8"));
  writeFileSync(`${dir}/config.json`, JSON.stringify({ ...config, architectures: ["Qwen3ForCausalLM"], is_matryoshka: true }));
  const weights = readFileSync(`${fixtures}/qwen3/model.safetensors`);
  const headerLength = Number(weights.readBigUInt64LE(0));
  const header = JSON.parse(weights.subarray(8, 8 + headerLength).toString());
  const renamed = Object.fromEntries(Object.entries(header).map(([k, v]) => [k.replace(/^model\./, ""), v]));
  let text = JSON.stringify(renamed);
  text += " ".repeat((8 - (text.length % 8)) % 8);
  const length = Buffer.alloc(8);
  length.writeBigUInt64LE(BigInt(text.length));
  writeFileSync(`${dir}/model.safetensors`, Buffer.concat([length, Buffer.from(text), weights.subarray(8 + headerLength)]));
  // The server starts with a tokenizer; the inputs here are token ids (the demo vocabulary is larger).
  copyFileSync(`${fixtures}/../../models/demo/tokenizer.json`, `${dir}/tokenizer.json`);
  writeFileSync(`${dir}/modules.json`, JSON.stringify([
    { idx: 0, name: "0", path: "", type: "sentence_transformers.models.Transformer" },
    { idx: 1, name: "1", path: "1_Pooling", type: "sentence_transformers.models.Pooling" },
    { idx: 2, name: "2", path: "2_Normalize", type: "sentence_transformers.models.Normalize" }]));
  mkdirSync(`${dir}/1_Pooling`);
  writeFileSync(`${dir}/1_Pooling/config.json`, JSON.stringify({ word_embedding_dimension: 64, pooling_mode_lasttoken: true }));
  return dir;
}

// The float32 tensors of a safetensors file, by name.
function readTensors(file) {
  const bytes = readFileSync(file);
  const headerLength = Number(bytes.readBigUInt64LE(0));
  const header = JSON.parse(bytes.subarray(8, 8 + headerLength).toString());
  const out = {};
  for (const [name, t] of Object.entries(header)) {
    if (name === "__metadata__") continue;
    const [begin, end] = t.data_offsets.map((o) => o + 8 + headerLength);
    const data = bytes.subarray(begin, end);
    out[name] = t.dtype === "I64" ? Array.from(new BigInt64Array(data.buffer.slice(data.byteOffset, data.byteOffset + data.length)), Number)
      : Array.from(new Float32Array(data.buffer.slice(data.byteOffset, data.byteOffset + data.length)));
  }
  return out;
}

test("a sentence-transformers directory serves embeddings by itself: Hugging Face's last token, normalized; dimensions", async () => {
  const dir = sentenceTransformersDir();
  const reference = readTensors(`${fixtures}/qwen3/reference.safetensors`);
  const ids = reference.input_ids, hidden = 64, last = reference.final_norm.slice((ids.length - 1) * hidden, ids.length * hidden);
  const modelServer = await startServer(["-m", dir]);
  try {
    const r = await post({ input: [ids, ids.slice(0, 10)] }, modelServer.url);
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.ok(cosine(r.body.data[0].embedding, last) >= 0.9998, String(cosine(r.body.data[0].embedding, last)));
    assert.ok(Math.abs(norm(r.body.data[0].embedding) - 1) < 1e-5);
    assert.equal(r.body.usage.prompt_tokens, ids.length + 10);
    // is_matryoshka: the leading 16 dimensions, normalized again.
    const short = await post({ input: ids, dimensions: 16 }, modelServer.url);
    assert.equal(short.body.data[0].embedding.length, 16);
    assert.ok(Math.abs(norm(short.body.data[0].embedding) - 1) < 1e-5);
    assert.ok(cosine(short.body.data[0].embedding, r.body.data[0].embedding.slice(0, 16)) > 0.99999);
    assert.match((await post({ input: ids, dimensions: 65 }, modelServer.url)).body.error.message, /dimensions: 65 is more than the model's 64/);
    const completion = await fetch(modelServer.url + "/v1/completions", { method: "POST", body: JSON.stringify({ prompt: [1, 2] }) });
    assert.equal(completion.status, 400);
  } finally {
    await modelServer.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});

// The sentence-transformers fixtures: served as their modules.json says (no --task), each text's
// vector against sentence-transformers' in float64, and the model's own tokenization.
for (const name of ["embed_qwen3", "embed_gte_qwen2"]) {
  test(`${name}: vectors match sentence-transformers (cosine >= 0.99999)`, async () => {
    const reference = JSON.parse(readFileSync(`${fixtures}/${name}/embeddings.json`, "utf8"));
    const modelServer = await startServer(["-m", `${fixtures}/${name}`]);
    try {
      const r = await post({ input: reference.cases.map((c) => c.text) }, modelServer.url);
      assert.equal(r.status, 200, JSON.stringify(r.body));
      reference.cases.forEach((c, i) => {
        assert.ok(cosine(r.body.data[i].embedding, c.last) >= 0.99999, `${c.text.slice(0, 30)}: ${cosine(r.body.data[i].embedding, c.last)}`);
      });
      assert.equal(r.body.usage.prompt_tokens, reference.cases.reduce((s, c) => s + c.ids.length, 0));
      if (name === "embed_qwen3") {  // is_matryoshka: the leading 16 dimensions, normalized again
        const short = await post({ input: reference.cases[1].text, dimensions: 16 }, modelServer.url);
        assert.equal(short.body.data[0].embedding.length, 16);
        assert.ok(Math.abs(norm(short.body.data[0].embedding) - 1) < 1e-5);
        assert.ok(cosine(short.body.data[0].embedding, reference.cases[1].last.slice(0, 16)) >= 0.99999);
      } else {
        assert.equal((await post({ input: "x", dimensions: 16 }, modelServer.url)).status, 400);
      }
      const chat = await fetch(modelServer.url + "/v1/completions", { method: "POST", body: JSON.stringify({ prompt: "hi" }) });
      assert.equal(chat.status, 400);
    } finally {
      await modelServer.stop();
    }
  });
}
