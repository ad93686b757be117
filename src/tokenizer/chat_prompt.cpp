#include "tokenizer/chat_prompt.h"

#include <algorithm>

#include "util/error.h"

namespace nanoserve {

namespace {

// Every string inside value (keys aside) with its special-token text protected.
void protect(nlohmann::ordered_json& value, const Tokenizer& tokenizer) {
  if (value.is_string()) {
    value = tokenizer.protect_special_text(value.get_ref<const std::string&>());
  } else if (value.is_structured()) {
    for (auto& child : value) protect(child, tokenizer);
  }
}

}  // namespace

ChatPrompt encode_chat(const ChatTemplate& chat_template, const Tokenizer& tokenizer, nlohmann::ordered_json context,
                       bool parse_special_in_messages) {
  if (!parse_special_in_messages) {
    for (const char* user_supplied : {"messages", "tools"}) {
      if (context.contains(user_supplied)) protect(context[user_supplied], tokenizer);
    }
  }
  ChatPrompt prompt;
  prompt.text = chat_template.render(context);
  prompt.ids = tokenizer.encode(prompt.text, /*add_special=*/false);  // the template writes the special tokens
  prompt.text = Tokenizer::strip_literal_marks(std::move(prompt.text));
  return prompt;
}

std::vector<int32_t> end_of_turn_ids(const ChatTemplate& chat_template, const Tokenizer& tokenizer) {
  std::vector<int32_t> ids;
  if (auto eos = tokenizer.token_id(chat_template.eos_token()); eos && !chat_template.eos_token().empty())
    ids.push_back(*eos);
  // Render a short exchange and look at what follows the assistant's words: whitespace, then the
  // first special token. A template that refuses this conversation names no token.
  constexpr std::string_view kProbe = "nanoserve-probe";
  const nlohmann::ordered_json context = {
      {"messages", {{{"role", "user"}, {"content", "Hi"}}, {{"role", "assistant"}, {"content", kProbe}}}},
      {"add_generation_prompt", false}};
  std::string text;
  try {
    text = chat_template.render(context);
  } catch (const Error&) {
    return ids;
  }
  const size_t at = text.rfind(kProbe);
  if (at == std::string::npos) return ids;
  for (int32_t id : tokenizer.encode(std::string_view(text).substr(at + kProbe.size()), /*add_special=*/false)) {
    if (tokenizer.is_special(id)) {
      if (std::find(ids.begin(), ids.end(), id) == ids.end()) ids.push_back(id);
      break;
    }
    const std::string piece = tokenizer.decode({id});
    if (piece.find_first_not_of(" \t\r\n") != std::string::npos) break;  // words before any special token
  }
  return ids;
}

}  // namespace nanoserve
