// A conversation turned into prompt tokens: the chat template renders the messages, and the
// tokenizer encodes the result with the template's special tokens as control tokens, while the same
// text typed inside a message stays ordinary text (unless the caller asks otherwise).
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "tokenizer/chat_template.h"
#include "tokenizer/tokenizer.h"

namespace nanoserve {

struct ChatPrompt {
  std::string text;  // the rendered prompt
  std::vector<int32_t> ids;
};

// context: messages, add_generation_prompt, tools and any template variables. With
// parse_special_in_messages, special-token text in messages and tools becomes control tokens too.
ChatPrompt encode_chat(const ChatTemplate& chat_template, const Tokenizer& tokenizer, nlohmann::ordered_json context,
                       bool parse_special_in_messages = false);

// The ids that end an assistant's turn: the special token the template writes right after an
// assistant message (Llama 3's <|eot_id|>, Qwen's <|im_end|>, Gemma's <end_of_turn>), and
// tokenizer_config.json's eos_token. Generation stops at them even when generation_config.json
// lists only the end-of-text token.
std::vector<int32_t> end_of_turn_ids(const ChatTemplate& chat_template, const Tokenizer& tokenizer);

}  // namespace nanoserve
