// Replies of models that think before they answer, split as vLLM's and llama-server's reasoning
// parsers do: the text between <think> and </think> is the message's reasoning_content (streamed
// as its own delta), the rest its content. --reasoning-parser picks the convention:
//   deepseek_r1: the chat template opens <think> itself, so a reply starts inside the reasoning
//                (an opening tag the model writes anyway is dropped);
//   qwen3:       a reply reasons only if it opens with <think> (Qwen 3 with enable_thinking false,
//                or any reply without the tag, is all content).
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace nanoserve::server {

enum class ReasoningFormat { DeepSeekR1, Qwen3 };

std::optional<ReasoningFormat> reasoning_format_named(std::string_view name);

class ReasoningSplitter {
 public:
  struct Parts {
    std::string reasoning, content;
  };

  explicit ReasoningSplitter(ReasoningFormat format);
  // The text of the next tokens: what can be told apart so far. A tag split across tokens is held
  // back until it is whole; `last` (the reply's end) lets go of what was held.
  Parts push(std::string_view text, bool last = false);

 private:
  enum class State { Start, Reasoning, Content };
  Parts split(std::string_view text);
  Parts finish();
  ReasoningFormat format_;
  State state_ = State::Start;
  std::string held_;
};

}  // namespace nanoserve::server
