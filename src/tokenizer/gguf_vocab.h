// A GGUF file's vocabulary (tokenizer.ggml.*) as the tokenizer.json that describes the same
// tokenizer, the way llama.cpp reads it, so one tokenizer implementation serves both formats:
// - "gpt2": byte-level BPE with merges; the pre-tokenizer regex named by tokenizer.ggml.pre;
// - "llama": SentencePiece BPE with byte fallback; merges ranked by the merged piece's score.
// Control and user-defined tokens become added tokens; BOS/EOS are added as llama.cpp adds them.
#pragma once

#include <nlohmann/json.hpp>
#include <span>
#include <string>
#include <string_view>

#include "formats/gguf.h"
#include "formats/gguf_metadata.h"

namespace nanoserve {

// Throws Error naming the key at fault.
nlohmann::json gguf_tokenizer_json(const GgufContents& contents, const std::string& source);

// The text of the token whose id metadata `id_key` holds, e.g. a template's bos_token, from
// `tokens` (tokenizer.ggml.tokens, read once by the caller); "" when there is no such token.
std::string gguf_token_text(const GgufMetadata& metadata, std::span<const std::string_view> tokens, const char* id_key);

}  // namespace nanoserve
