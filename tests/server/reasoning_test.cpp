// The reasoning parsers: <think>...</think> split from the content however the text is cut into
// tokens, for both conventions.
#include <gtest/gtest.h>

#include "server/reasoning.h"

namespace nanoserve::server {
namespace {

// Feeds `text` in pieces of `step` bytes and returns what came out, reasoning and content.
ReasoningSplitter::Parts split(ReasoningFormat format, std::string_view text, size_t step) {
  ReasoningSplitter splitter(format);
  ReasoningSplitter::Parts all;
  for (size_t at = 0; at < text.size(); at += step) {
    auto parts = splitter.push(text.substr(at, step), at + step >= text.size());
    all.reasoning += parts.reasoning;
    all.content += parts.content;
  }
  return all;
}

struct Case {
  ReasoningFormat format;
  std::string_view text, reasoning, content;
};

TEST(ReasoningSplitter, SplitsWhereverTheTokensEnd) {
  using enum ReasoningFormat;
  const Case cases[] = {
      {Qwen3, "<think>\nWho was he?\n</think>\n\nMoses.", "\nWho was he?\n", "\n\nMoses."},
      {Qwen3, "Moses, without thinking.", "", "Moses, without thinking."},
      {Qwen3, "<thin", "", "<thin"},                                         // too short to tell: content
      {Qwen3, "<think>cut off in the middle", "cut off in the middle", ""},  // ends while reasoning
      {Qwen3, "a </think> in the content", "", "a </think> in the content"},
      {DeepSeekR1, "the template opened it</think>Answer", "the template opened it", "Answer"},
      {DeepSeekR1, "<think>written anyway</think>Answer", "written anyway", "Answer"},
      {DeepSeekR1, "all reasoning, no close", "all reasoning, no close", ""},
      {DeepSeekR1, "a </thinker> is not the tag</think>!", "a </thinker> is not the tag", "!"},
  };
  for (const Case& c : cases) {
    for (size_t step : {1, 2, 3, 5, 8, 100}) {
      const auto parts = split(c.format, c.text, step);
      EXPECT_EQ(parts.reasoning, c.reasoning) << c.text << " in pieces of " << step;
      EXPECT_EQ(parts.content, c.content) << c.text << " in pieces of " << step;
    }
  }
}

TEST(ReasoningSplitter, HoldsBackOnlyWhatMayBeATag) {
  ReasoningSplitter splitter(ReasoningFormat::Qwen3);
  EXPECT_EQ(splitter.push("<think>I wonder").reasoning, "I wonder");
  EXPECT_EQ(splitter.push(" if</th").reasoning, " if");  // "</th" may be the close
  const auto parts = splitter.push("ink>Yes");
  EXPECT_EQ(parts.reasoning, "");
  EXPECT_EQ(parts.content, "Yes");
  EXPECT_EQ(splitter.push(" and</th").content, " and</th");  // in the content nothing is held
}

TEST(ReasoningSplitter, Names) {
  EXPECT_EQ(reasoning_format_named("qwen3"), ReasoningFormat::Qwen3);
  EXPECT_EQ(reasoning_format_named("deepseek_r1"), ReasoningFormat::DeepSeekR1);
  EXPECT_EQ(reasoning_format_named("granite"), std::nullopt);
}

}  // namespace
}  // namespace nanoserve::server
