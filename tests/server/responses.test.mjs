// The Responses API (POST /v1/responses) with the clients that call it by default, unmodified but
// for their base URL: the official `openai` client (create, stream, retrieve, delete, a
// conversation continued by id, a function-call round, text.format) and the Vercel AI SDK's default
// model (createOpenAI(...)(id) speaks the Responses API: generateText, streamText, tools). Bad input
// gets a 400 or 404 naming it.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import OpenAI from "openai";
import { generateText, streamText, tool, jsonSchema } from "ai";
import { createOpenAI } from "@ai-sdk/openai";
import { startServer, metrics } from "./harness.mjs";

let server, client;

before(async () => {
  server = await startServer([]);
  client = new OpenAI({ baseURL: server.url + "/v1", apiKey: "none", maxRetries: 0 });
});
after(async () => {
  const { code } = await server.stop();
  assert.equal(code, 0);
});

const weather = {
  type: "function", name: "get_weather", description: "Weather in a city",
  parameters: { type: "object", properties: { city: { type: "string", maxLength: 20 }, unit: { enum: ["C", "F"] } },
    required: ["city", "unit"], additionalProperties: false },
};

test("openai: a response, its text, usage, and the same reply greedy twice", async () => {
  const r = await client.responses.create({ model: "demo", input: "Who was Moses?", max_output_tokens: 16, temperature: 0 });
  assert.equal(r.object, "response");
  assert.match(r.id, /^resp_[0-9a-f]{24}$/);
  assert.ok(["completed", "incomplete"].includes(r.status));
  assert.equal(r.output.length, 1);
  assert.equal(r.output[0].type, "message");
  assert.equal(r.output[0].role, "assistant");
  assert.ok(r.output_text.length > 0);
  assert.equal(r.output_text, r.output[0].content[0].text);
  assert.ok(r.usage.input_tokens > 0 && r.usage.output_tokens > 0 && r.usage.output_tokens <= 16);
  assert.equal(r.usage.total_tokens, r.usage.input_tokens + r.usage.output_tokens);
  if (r.status === "incomplete") assert.deepEqual(r.incomplete_details, { reason: "max_output_tokens" });
  // The same prompt as a chat message: the same greedy text.
  const chat = await client.chat.completions.create({ model: "demo", messages: [{ role: "user", content: "Who was Moses?" }],
    max_tokens: 16, temperature: 0 });
  assert.equal(r.output_text, chat.choices[0].message.content);
});

test("openai: streamed events arrive in order with sequence numbers and add up to the text", async () => {
  const stream = await client.responses.create({ model: "demo", input: "Who was Moses?", max_output_tokens: 12, stream: true, temperature: 0 });
  const types = [];
  let text = "", last = -1, final;
  for await (const event of stream) {
    assert.equal(event.sequence_number, last + 1);
    last = event.sequence_number;
    types.push(event.type);
    if (event.type === "response.output_text.delta") text += event.delta;
    if (event.type === "response.completed" || event.type === "response.incomplete") final = event.response;
  }
  assert.deepEqual(types.slice(0, 4), ["response.created", "response.in_progress", "response.output_item.added", "response.content_part.added"]);
  assert.deepEqual(types.slice(-4, -1), ["response.output_text.done", "response.content_part.done", "response.output_item.done"]);
  assert.ok(types.includes("response.output_text.delta"));
  assert.equal(final.output[0].content[0].text, text);
  const whole = await client.responses.create({ model: "demo", input: "Who was Moses?", max_output_tokens: 12, temperature: 0 });
  assert.equal(whole.output_text, text);
});

test("openai: stored responses are retrieved, continued by previous_response_id, and deleted", async () => {
  const first = await client.responses.create({ model: "demo", input: "Who was Moses?", max_output_tokens: 8, temperature: 0 });
  const again = await client.responses.retrieve(first.id);
  assert.equal(again.output_text, first.output_text);
  const second = await client.responses.create({ model: "demo", input: "And Aaron?", previous_response_id: first.id, max_output_tokens: 8, temperature: 0 });
  assert.equal(second.previous_response_id, first.id);
  // The continuation's prompt is the whole conversation: the first turn comes from the prefix cache.
  assert.ok(second.usage.input_tokens > first.usage.input_tokens + first.usage.output_tokens, JSON.stringify(second.usage));
  assert.ok(second.usage.input_tokens_details.cached_tokens >= 16, JSON.stringify(second.usage));
  const asChat = await client.chat.completions.create({ model: "demo", max_tokens: 8, temperature: 0, messages: [
    { role: "user", content: "Who was Moses?" }, { role: "assistant", content: first.output_text }, { role: "user", content: "And Aaron?" }] });
  assert.equal(second.output_text, asChat.choices[0].message.content);
  await client.responses.delete(first.id);
  await assert.rejects(client.responses.retrieve(first.id), (e) => e instanceof OpenAI.NotFoundError);
  // store: false keeps nothing.
  const unstored = await client.responses.create({ model: "demo", input: "Hi", max_output_tokens: 2, store: false });
  await assert.rejects(client.responses.retrieve(unstored.id), (e) => e instanceof OpenAI.NotFoundError);
});

test("openai: a function call round: function_call item out, function_call_output in", async () => {
  const r = await client.responses.create({ model: "demo", input: "Weather in Paris?", tools: [weather], tool_choice: "required",
    parallel_tool_calls: false, max_output_tokens: 100 });
  const calls = r.output.filter((item) => item.type === "function_call");
  assert.equal(calls.length, 1);
  assert.equal(calls[0].name, "get_weather");
  assert.match(calls[0].call_id, /^call_/);
  const args = JSON.parse(calls[0].arguments);
  assert.ok(typeof args.city === "string" && ["C", "F"].includes(args.unit), calls[0].arguments);
  const next = await client.responses.create({ model: "demo", previous_response_id: r.id, tools: [weather], max_output_tokens: 8,
    input: [{ type: "function_call_output", call_id: calls[0].call_id, output: "22 degrees" }] });
  assert.ok(["completed", "incomplete"].includes(next.status));
  assert.ok(next.usage.input_tokens > r.usage.input_tokens, "the call and its output are in the prompt");
});

test("openai: text.format json_schema is enforced", async () => {
  const schema = { type: "object", properties: { name: { type: "string", maxLength: 10 }, age: { type: "integer", minimum: 0, maximum: 99 } },
    required: ["name", "age"], additionalProperties: false };
  const r = await client.responses.create({ model: "demo", input: "Describe a person.", max_output_tokens: 60, temperature: 1, seed: 3,
    text: { format: { type: "json_schema", name: "person", schema, strict: true } } });
  const value = JSON.parse(r.output_text);
  assert.deepEqual(Object.keys(value), ["name", "age"]);
  assert.ok(Number.isInteger(value.age) && value.age >= 0 && value.age <= 99);
  assert.deepEqual(r.text.format.type, "json_schema");
});

test("Vercel AI SDK's default model (the Responses API): generateText, streamText and a tool call", async () => {
  const provider = createOpenAI({ baseURL: server.url + "/v1", apiKey: "none" });
  const model = provider("demo");
  const answered = async () => (await metrics(server.url))['nanoserve_requests_total{endpoint="/v1/responses",status="200"}'] ?? 0;
  const before = await answered();
  const text = await generateText({ model, prompt: "Who was Moses?", maxOutputTokens: 16, temperature: 0 });
  assert.ok(text.text.length > 0);
  assert.ok(text.usage.inputTokens > 0 && text.usage.outputTokens > 0);
  const streamed = streamText({ model, prompt: "Who was Moses?", maxOutputTokens: 16, temperature: 0 });
  let joined = "";
  for await (const delta of streamed.textStream) joined += delta;
  assert.equal(joined, text.text);
  const called = await generateText({
    model, prompt: "Weather in Paris?", maxOutputTokens: 100, toolChoice: "required",
    providerOptions: { openai: { parallelToolCalls: false } },
    tools: { get_weather: tool({ description: "Weather in a city", inputSchema: jsonSchema(weather.parameters) }) },
  });
  assert.equal(called.toolCalls.length, 1);
  assert.equal(called.toolCalls[0].toolName, "get_weather");
  assert.ok(["C", "F"].includes(called.toolCalls[0].input.unit));
  assert.equal(await answered(), before + 3, "the SDK's default model calls /v1/responses");
});

test("bad input: unknown items and tools, empty input, an unknown previous_response_id, background", async () => {
  const post = async (body) => {
    const r = await fetch(server.url + "/v1/responses", { method: "POST", body: JSON.stringify({ model: "demo", ...body }) });
    return { status: r.status, error: (await r.json()).error };
  };
  const cases = [
    [{ input: [{ role: "user", content: [{ type: "input_image", image_url: "https://x/y.png" }] }] }, 400,
      /input\[0\]\.content\[0\]: 'input_image' parts are not supported/],
    [{ input: [{ type: "web_search_call", id: "ws_1" }] }, 400, /input\[0\]: items of type 'web_search_call' are not supported/],
    [{ input: "hi", tools: [{ type: "file_search", vector_store_ids: [] }] }, 400, /tools\[0\]: 'file_search' tools are not supported/],
    [{ input: "" }, 400, /input: empty/],
    [{ input: [] }, 400, /input: empty/],
    [{}, 400, /input: required/],
    [{ input: "hi", previous_response_id: "resp_000000000000000000000000" }, 404, /previous_response_id: no stored response/],
    [{ input: "hi", background: true }, 400, /background: responses in the background are not supported/],
    [{ input: "hi", max_output_tokens: 0 }, 400, /max_output_tokens: expected a positive integer/],
    [{ input: [{ role: "robot", content: "hi" }] }, 400, /input\[0\]\.role: 'robot' is not a role/],
  ];
  for (const [body, status, message] of cases) {
    const r = await post(body);
    assert.equal(r.status, status, JSON.stringify(body));
    assert.match(r.error.message, message);
  }
});
