#include "server/reasoning.h"

#include <algorithm>
#include <utility>

namespace nanoserve::server {

namespace {

constexpr std::string_view kOpen = "<think>", kClose = "</think>";

// The length of the longest end of `text` that begins `tag` (a tag that may still be completing).
size_t partial_tag(std::string_view text, std::string_view tag) {
  for (size_t n = std::min(text.size(), tag.size() - 1); n > 0; --n) {
    if (text.substr(text.size() - n) == tag.substr(0, n)) return n;
  }
  return 0;
}

}  // namespace

std::optional<ReasoningFormat> reasoning_format_named(std::string_view name) {
  if (name == "deepseek_r1") return ReasoningFormat::DeepSeekR1;
  if (name == "qwen3") return ReasoningFormat::Qwen3;
  return std::nullopt;
}

ReasoningSplitter::ReasoningSplitter(ReasoningFormat format) : format_(format) {}

ReasoningSplitter::Parts ReasoningSplitter::push(std::string_view text, bool last) {
  Parts out = split(text);
  if (last) {
    Parts rest = finish();
    out.reasoning += rest.reasoning;
    out.content += rest.content;
  }
  return out;
}

ReasoningSplitter::Parts ReasoningSplitter::split(std::string_view text) {
  held_ += text;
  Parts out;
  for (;;) {
    if (state_ == State::Start) {
      if (held_.starts_with(kOpen)) {
        held_.erase(0, kOpen.size());
        state_ = State::Reasoning;
      } else if (kOpen.starts_with(held_)) {
        return out;  // "<thi": not yet known
      } else {
        state_ = format_ == ReasoningFormat::DeepSeekR1 ? State::Reasoning : State::Content;
      }
    } else if (state_ == State::Reasoning) {
      const size_t close = held_.find(kClose);
      if (close == std::string::npos) {
        const size_t keep = partial_tag(held_, kClose);
        out.reasoning += held_.substr(0, held_.size() - keep);
        held_.erase(0, held_.size() - keep);
        return out;
      }
      out.reasoning += held_.substr(0, close);
      held_.erase(0, close + kClose.size());
      state_ = State::Content;
    } else {
      out.content += std::exchange(held_, {});
      return out;
    }
  }
}

ReasoningSplitter::Parts ReasoningSplitter::finish() {
  Parts out;
  // A reply that ends inside its reasoning keeps it as reasoning; one too short to tell is content.
  (state_ == State::Reasoning ? out.reasoning : out.content) = std::exchange(held_, {});
  return out;
}

}  // namespace nanoserve::server
