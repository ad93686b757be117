// Chat templates of real models rendered by nanoserve and by Hugging Face's @huggingface/jinja,
// over a set of conversations: identical text, or an error from both; the prompt's ids are the
// reference tokenizer's; special-token text typed in a message never becomes a control token.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { test } from "node:test";
import { Template } from "@huggingface/jinja";
import { loadReference, vocabularies } from "./vocabularies.mjs";

const binary = process.env.NANOSERVE_BINARY;

const tools = [{
  type: "function",
  function: {
    name: "get_weather",
    description: "Current weather in a city",
    parameters: { type: "object", properties: { city: { type: "string", description: "City name" } }, required: ["city"] },
  },
}];
const toolCall = { id: "call_1", type: "function", function: { name: "get_weather", arguments: { city: "Paris" } } };

export const conversations = [
  { messages: [{ role: "user", content: "Hello!" }], add_generation_prompt: true },
  { messages: [{ role: "system", content: "You are terse." }, { role: "user", content: "Why is the sky blue?" }], add_generation_prompt: true },
  {
    messages: [
      { role: "system", content: "You answer in French." },
      { role: "user", content: "Hi" },
      { role: "assistant", content: "Bonjour !" },
      { role: "user", content: "Count to three.\nThen stop." },
    ],
    add_generation_prompt: true,
  },
  { messages: [{ role: "user", content: "Hi" }, { role: "assistant", content: "Hello, how can I help?" }], add_generation_prompt: false },
  { messages: [{ role: "user", content: "  spaces around  " }], add_generation_prompt: false },
  { messages: [{ role: "user", content: "Unicode: 北京 😀 café" }], add_generation_prompt: true },
  { messages: [{ role: "user", content: "What is the weather in Paris?" }], tools, add_generation_prompt: true },
  {
    messages: [
      { role: "user", content: "What is the weather in Paris?" },
      { role: "assistant", content: "", tool_calls: [toolCall] },
      { role: "tool", tool_call_id: "call_1", name: "get_weather", content: "22 degrees, sunny" },
    ],
    tools,
    add_generation_prompt: true,
  },
  { messages: [{ role: "assistant", content: "I speak first." }], add_generation_prompt: true },
];

function tokenText(config, key) {
  const v = config[key];
  return typeof v === "string" ? v : v?.content ?? "";
}

function chatTemplate(config) {
  const t = config.chat_template;
  return Array.isArray(t) ? t.find((x) => x.name === "default").template : t;
}

// The reference render, or the error it raises.
function reference(config, conversation) {
  const variables = { ...conversation, bos_token: tokenText(config, "bos_token"), eos_token: tokenText(config, "eos_token") };
  try {
    return { text: new Template(chatTemplate(config)).render(variables) };
  } catch (e) {
    return { error: String(e.message ?? e) };
  }
}

function nanoserve(dir, conversations, flags = []) {
  const input = conversations.map((c) => JSON.stringify(c)).join("\n") + "\n";
  return spawnSync(binary, ["chat-template", "-m", dir, "--jsonl", ...flags], { input, maxBuffer: 1 << 26 });
}

function lines(run) {
  assert.equal(run.status, 0, `nanoserve chat-template failed: ${run.stderr}`);
  return run.stdout.toString("utf8").trimEnd().split("\n").map((l) => JSON.parse(l));
}

const withTemplates = vocabularies.filter((v) => existsSync(v.configPath) && JSON.parse(readFileSync(v.configPath, "utf8")).chat_template);

test("five real chat templates are under test", () => assert.equal(withTemplates.length, 5));

for (const vocabulary of withTemplates) {
  test(`${vocabulary.name}: chat renders identical to @huggingface/jinja`, () => {
    const { tokenizer, config } = loadReference(vocabulary);
    const expected = conversations.map((c) => reference(config, c));
    const rendering = conversations.filter((_, i) => !expected[i].error);
    const rendered = lines(nanoserve(vocabulary.dir, rendering));
    const ids = lines(nanoserve(vocabulary.dir, rendering, ["--ids"]));
    let k = 0;
    conversations.forEach((conversation, i) => {
      if (expected[i].error) {
        const run = nanoserve(vocabulary.dir, [conversation]);
        assert.notEqual(run.status, 0, `conversation ${i}: the reference raised "${expected[i].error}", nanoserve rendered`);
        assert.match(run.stderr.toString(), /chat template/, `conversation ${i}: the error names the template`);
        return;
      }
      assert.equal(rendered[k], expected[i].text, `conversation ${i}`);
      assert.deepEqual(ids[k], tokenizer.encode(expected[i].text, { add_special_tokens: false }).ids, `conversation ${i}: ids`);
      k++;
    });
    console.log(`  ${vocabulary.name}: ${rendering.length} renders identical, ${conversations.length - rendering.length} raised by both`);
  });

  test(`${vocabulary.name}: special-token text typed in a message stays text`, () => {
    const { tokenizer, json } = loadReference(vocabulary);
    const specials = json.added_tokens.filter((t) => t.special);
    const typed = specials.slice(0, 4).map((t) => t.content).join(" and ");
    const plain = { messages: [{ role: "user", content: "Say hello" }], add_generation_prompt: true };
    const injected = { messages: [{ role: "user", content: `Say hello ${typed}` }], add_generation_prompt: true };
    const [plainIds, injectedIds] = lines(nanoserve(vocabulary.dir, [plain, injected], ["--ids"]));
    const control = (ids) => ids.filter((id) => specials.some((t) => t.id === id)).length;
    assert.equal(control(injectedIds), control(plainIds), `typed "${typed}" added control tokens`);
    const [text] = lines(nanoserve(vocabulary.dir, [injected]));
    assert.equal(tokenizer.decode(injectedIds, { skip_special_tokens: false, clean_up_tokenization_spaces: false }),
      json.normalizer?.type === "NFC" ? text.normalize("NFC") : text, "the ids spell the rendered prompt");
    const [parsed] = lines(nanoserve(vocabulary.dir, [injected], ["--ids", "--parse-special"]));
    assert.ok(control(parsed) > control(plainIds), "--parse-special turns the typed text into control tokens");
  });
}
