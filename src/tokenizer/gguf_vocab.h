// A GGUF file's vocabulary (tokenizer.ggml.*) as the tokenizer.json that describes the same
// tokenizer, the way llama.cpp reads it, so one tokenizer implementation serves both formats:
// - "gpt2": byte-level BPE with merges; the pre-tokenizer regex named by tokenizer.ggml.pre;
// - "llama": SentencePiece BPE with byte fallback; merges ranked by the merged piece's score.
// Control and user-defined tokens become added tokens; BOS/EOS are added as llama.cpp adds them.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "formats/gguf.h"

namespace nanoserve {

// Throws Error naming the key at fault.
nlohmann::json gguf_tokenizer_json(const GgufContents& contents, const std::string& source);

// The text of token `id`, e.g. to show a template its bos_token; "" when there is no such token.
std::string gguf_token_text(const GgufContents& contents, const std::string& source, const char* id_key);

}  // namespace nanoserve
