// A model's chat template (tokenizer_config.json's `chat_template`, a Jinja template) rendered
// with messages the way Hugging Face's apply_chat_template renders it.
#pragma once

#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

namespace nanoserve {

namespace jinja {
struct Stmt;
}

class ChatTemplate {
 public:
  explicit ChatTemplate(const std::string& source);  // throws Error with the template line
  ~ChatTemplate();
  ChatTemplate(ChatTemplate&&) noexcept;
  ChatTemplate& operator=(ChatTemplate&&) noexcept;

  // Units of work a render may do (loop iterations, calls, list items, bytes scanned; see
  // chat/value.h): about 0.5 s at worst in a Release build. A real template needs a few thousand.
  static constexpr uint64_t kMaxWork = 4'000'000;

  // context: messages, add_generation_prompt, bos_token, eos_token, tools, ... (any JSON object;
  // ordered, since tojson prints keys in the order the client sent them, as Python does).
  // Throws Error past max_work (the fuzzers pass less, to run more inputs a second).
  std::string render(const nlohmann::ordered_json& context, uint64_t max_work = kMaxWork) const;

  // From a model directory (tokenizer_config.json's chat_template: a string, or the "default" of a
  // named list; else chat_template.jinja or chat_template.json) or a GGUF file's
  // tokenizer.chat_template, with the model's bos/eos token strings. `override` (--chat-template)
  // replaces the model's: a file, or the template itself. Empty when there is none.
  static std::optional<ChatTemplate> from_model(const std::string& path, const std::string& override = "");
  const std::string& bos_token() const { return bos_token_; }
  const std::string& eos_token() const { return eos_token_; }
  const std::string& source() const { return source_; }  // the Jinja text (tool-call format detection)

 private:
  std::unique_ptr<std::vector<std::unique_ptr<jinja::Stmt>>> body_;
  std::string bos_token_, eos_token_;
  std::string source_;
};

}  // namespace nanoserve
