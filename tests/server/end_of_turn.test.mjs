// End-of-turn tokens end generation, and special-token text typed in a message stays text, with the
// real tokenizer and chat template of three families. The model is built here: a one-layer Llama
// whose logits depend only on the last token (attention and MLP outputs are zero), wired so that
// greedy decoding after any prompt writes three words and then the end-of-turn token; after that
// token it would start over. generation_config.json lists only the end-of-text token, so the stop
// has to come from the template (Llama 3's <|eot_id|>) or tokenizer_config.json's eos_token.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import OpenAI from "openai";
import { binary, startServer } from "./harness.mjs";
import { vocabularies } from "../tokenizer/hf/vocabularies.mjs";

const hidden = 8;
const families = [
  { name: "llama3", endOfTurn: "<|eot_id|>", endOfText: "<|end_of_text|>" },
  { name: "qwen3", endOfTurn: "<|im_end|>", endOfText: "<|endoftext|>" },
  { name: "gemma3", endOfTurn: "<end_of_turn>", endOfText: "<eos>" },
];
const scratch = mkdtempSync(join(tmpdir(), "nanoserve-eot-"));
after(() => rmSync(scratch, { recursive: true, force: true }));

function writeSafetensors(path, tensors) {
  let offset = 0;
  const header = {};
  for (const [name, { shape, data }] of Object.entries(tensors)) {
    header[name] = { dtype: "F32", shape, data_offsets: [offset, offset + data.byteLength] };
    offset += data.byteLength;
  }
  let json = JSON.stringify(header);
  json += " ".repeat((8 - (json.length % 8)) % 8);
  const length = Buffer.alloc(8);
  length.writeBigUInt64LE(BigInt(json.length));
  writeFileSync(path, Buffer.concat([length, Buffer.from(json), ...Object.values(tensors).map((t) => Buffer.from(t.data.buffer))]));
}

// Token a -> b: a's embedding is a unit vector that only b's output row scores.
function buildModel(family) {
  const dir = join(scratch, family.name);
  mkdirSync(dir);
  const source = vocabularies.find((v) => v.name === family.name).dir;
  const tokenizer = JSON.parse(readFileSync(join(source, "tokenizer.json"), "utf8"));
  const idOf = (text) => tokenizer.added_tokens.find((t) => t.content === text)?.id ?? tokenizer.model.vocab[text];
  const vocab = 1 + [...Object.values(tokenizer.model.vocab), ...tokenizer.added_tokens.map((t) => t.id)].reduce((a, b) => Math.max(a, b));
  const space = family.name === "gemma3" ? "▁" : "Ġ";
  const words = ["Hello", `${space}there`, "!"].map(idOf);
  const chain = [...words, idOf(family.endOfTurn)];
  assert.ok(chain.every((id) => Number.isInteger(id)), `${family.name}: chain ${chain}`);
  const embed = new Float32Array(vocab * hidden), head = new Float32Array(vocab * hidden);
  for (let t = 0; t < vocab; t++) embed[t * hidden + 3] = 1;  // every other token (and end of turn) -> slot 3
  words.forEach((id, slot) => {
    embed.fill(0, id * hidden, (id + 1) * hidden);
    embed[id * hidden + slot] = 1;
  });
  head[chain[0] * hidden + 3] = 10;  // slot 3 -> first word
  for (let slot = 0; slot < 3; slot++) head[chain[slot + 1] * hidden + slot] = 10;
  const ones = { shape: [hidden], data: new Float32Array(hidden).fill(1) };
  const square = () => ({ shape: [hidden, hidden], data: new Float32Array(hidden * hidden).fill(0.1) });
  const zero = () => ({ shape: [hidden, hidden], data: new Float32Array(hidden * hidden) });
  const layer = "model.layers.0.";
  writeSafetensors(join(dir, "model.safetensors"), {
    "model.embed_tokens.weight": { shape: [vocab, hidden], data: embed },
    [layer + "input_layernorm.weight"]: ones,
    [layer + "self_attn.q_proj.weight"]: square(),
    [layer + "self_attn.k_proj.weight"]: square(),
    [layer + "self_attn.v_proj.weight"]: square(),
    [layer + "self_attn.o_proj.weight"]: zero(),
    [layer + "post_attention_layernorm.weight"]: ones,
    [layer + "mlp.gate_proj.weight"]: square(),
    [layer + "mlp.up_proj.weight"]: square(),
    [layer + "mlp.down_proj.weight"]: zero(),
    "model.norm.weight": ones,
    "lm_head.weight": { shape: [vocab, hidden], data: head },
  });
  writeFileSync(join(dir, "config.json"), JSON.stringify({
    architectures: ["LlamaForCausalLM"], model_type: "llama", hidden_size: hidden, intermediate_size: hidden,
    num_hidden_layers: 1, num_attention_heads: 1, num_key_value_heads: 1, vocab_size: vocab,
    max_position_embeddings: 512, rms_norm_eps: 1e-6, rope_theta: 10000, tie_word_embeddings: false,
    torch_dtype: "float32",
  }));
  writeFileSync(join(dir, "generation_config.json"), JSON.stringify({ eos_token_id: [idOf(family.endOfText)] }));
  for (const file of ["tokenizer.json", "tokenizer_config.json"]) copyFileSync(join(source, file), join(dir, file));
  return dir;
}

for (const family of families) {
  test(`${family.name}: ${family.endOfTurn} ends the reply; typed special-token text stays text`, async () => {
    const dir = buildModel(family);
    const server = await startServer(["-m", dir, "--kv-cache-memory", "0.01", "--served-model-name", "m"]);
    try {
      const client = new OpenAI({ baseURL: server.url + "/v1", apiKey: "unused" });
      const messages = [{ role: "user", content: "Hi" }];
      const reply = await client.chat.completions.create({ model: "m", messages, temperature: 0, max_tokens: 20 });
      assert.equal(reply.choices[0].message.content, "Hello there!");
      assert.equal(reply.choices[0].finish_reason, "stop");
      // Streaming too, and /v1/completions with a raw prompt.
      let streamed = "";
      for await (const chunk of await client.chat.completions.create({ model: "m", messages, temperature: 0, max_tokens: 20, stream: true })) {
        streamed += chunk.choices[0]?.delta?.content ?? "";
      }
      assert.equal(streamed, "Hello there!");
      const raw = await client.completions.create({ model: "m", prompt: "Hi", temperature: 0, max_tokens: 20 });
      assert.equal(raw.choices[0].text, "Hello there!");
      assert.equal(raw.choices[0].finish_reason, "stop");

      const typed = [{ role: "user", content: `Hi ${family.endOfTurn} ${family.endOfText}` }];
      const asText = await client.chat.completions.create({ model: "m", messages: typed, max_tokens: 1 });
      const asControl = await client.chat.completions.create({ model: "m", messages: typed, max_tokens: 1, parse_special_tokens: true });
      assert.ok(asText.usage.prompt_tokens > asControl.usage.prompt_tokens + 2,
        `typed specials: ${asText.usage.prompt_tokens} prompt tokens as text, ${asControl.usage.prompt_tokens} as control tokens`);

      // The server's prompt is the one `nanoserve chat-template` renders, tools included: the keys
      // reach the template in the client's order, which tojson prints (Qwen 3 prints the tools).
      const conversation = {
        messages: [{ role: "user", content: "Weather?" }],
        tools: [{ type: "function", function: { name: "get_weather", parameters: { type: "object", properties: {} } } }],
      };
      const served = await (await fetch(server.url + "/tokenize", { method: "POST", body: JSON.stringify(conversation) })).json();
      const cli = spawnSync(binary, ["chat-template", "-m", dir, "--ids"], { input: JSON.stringify({ ...conversation, add_generation_prompt: true }) });
      assert.equal(cli.status, 0, String(cli.stderr));
      assert.deepEqual(served.tokens, JSON.parse(cli.stdout));
    } finally {
      await server.stop();
    }
  });
}
