// The forward pass against Hugging Face transformers run in float64 (tests/fixtures/README.md):
// every captured component, the full logits, and the greedy continuation.
#include "model/transformer.h"

#include <gtest/gtest.h>

#include <map>

#include "engine/sampler.h"
#include "test_support.h"
#include "util/error.h"

namespace nanoserve {
namespace {

constexpr float kComponentTolerance = 1e-5f;
constexpr float kLogitsTolerance = 1e-4f;

struct Case {
  const char* name;
  std::string model_dir;
};

std::vector<Case> cases() {
  return {{"tinyllama", test::fixture("tinyllama")},
          {"llama32", test::fixture("llama32")},
          {"sharded", test::fixture("sharded")},
          {"demo", test::demo_model_dir()}};
}

class FixtureTest : public ::testing::TestWithParam<Case> {
 protected:
  void SetUp() override {
    model_ = std::make_unique<Model>(load_model(GetParam().model_dir));
    ref_ = test::read_reference(test::fixture(std::string(GetParam().name) + "/reference.safetensors"));
  }
  std::vector<int32_t> ids(const std::string& name) const {
    const auto& v = ref_.ints.at(name);
    return {v.begin(), v.end()};
  }

  std::unique_ptr<Model> model_;
  test::Reference ref_;
};

TEST_P(FixtureTest, ComponentsAndLogitsMatchReference) {
  Transformer transformer(*model_);
  const auto input = ids("input_ids");
  KvCache cache = transformer.new_cache(static_cast<int64_t>(input.size()));
  std::map<std::string, std::vector<float>> got;
  ActivationSink sink = [&](const std::string& name, const float* data, int64_t rows, int64_t cols) {
    got[name].assign(data, data + rows * cols);
  };
  const auto logits = transformer.forward(input, cache, LogitsFor::AllTokens, &sink);
  got["logits"] = logits;

  size_t compared = 0;
  for (const auto& [name, expected] : ref_.floats) {
    if (name == "greedy_margins") continue;
    ASSERT_TRUE(got.count(name)) << "forward pass did not report " << name;
    ASSERT_EQ(got[name].size(), expected.size()) << name;
    const float diff = test::max_abs_diff(got[name].data(), expected.data(), expected.size());
    const float tolerance = name == "logits" ? kLogitsTolerance : kComponentTolerance;
    EXPECT_LE(diff, tolerance) << GetParam().name << " " << name;
    RecordProperty(name, std::to_string(diff));
    if (name == "logits" || name == "embed" || name.find("layer0.") == 0 || name == "final_norm") {
      std::printf("  %-10s %-20s max abs diff %.3g\n", GetParam().name, name.c_str(), diff);
    }
    ++compared;
  }
  EXPECT_GE(compared, 8u);
}

// Greedy decoding with the KV cache, one token at a time, reproduces the reference continuation
// (made with a full forward per step). Steps whose top-2 margin is below 1e-3 are too close to call.
TEST_P(FixtureTest, GreedyContinuationMatchesReference) {
  Transformer transformer(*model_);
  const auto prompt = ids("greedy_prompt");
  const auto expected = ref_.ints.at("greedy_tokens");
  const auto& margins = ref_.floats.at("greedy_margins");
  KvCache cache = transformer.new_cache(static_cast<int64_t>(prompt.size() + expected.size()));
  auto logits = transformer.forward(prompt, cache, LogitsFor::LastToken);
  for (size_t step = 0; step < expected.size(); ++step) {
    const int32_t next = argmax(logits);
    if (margins[step] > 1e-3f) {
      ASSERT_EQ(next, expected[step]) << GetParam().name << " step " << step;
    }
    const int32_t token[1] = {static_cast<int32_t>(expected[step])};
    logits = transformer.forward(token, cache, LogitsFor::LastToken);
  }
}

// Prefill in chunks and decode one token at a time must give exactly the logits of one full forward:
// every kernel computes a row the same way whatever else is in the batch.
TEST_P(FixtureTest, IncrementalDecodeEqualsFullForward) {
  Transformer transformer(*model_);
  const auto input = ids("input_ids");
  const int64_t n = static_cast<int64_t>(input.size()), vocab = model_->config.vocab_size;
  KvCache full_cache = transformer.new_cache(n);
  const auto full = transformer.forward(input, full_cache, LogitsFor::AllTokens);

  KvCache cache = transformer.new_cache(n);
  const int64_t prefill = n / 3;
  auto logits = transformer.forward(std::span(input).first(static_cast<size_t>(prefill)), cache, LogitsFor::AllTokens);
  ASSERT_EQ(test::max_abs_diff(logits.data(), full.data(), static_cast<size_t>(prefill * vocab)), 0.0f);
  for (int64_t t = prefill; t < n; ++t) {
    logits = transformer.forward(std::span(input).subspan(static_cast<size_t>(t), 1), cache, LogitsFor::LastToken);
    ASSERT_EQ(test::max_abs_diff(logits.data(), full.data() + t * vocab, static_cast<size_t>(vocab)), 0.0f)
        << "position " << t;
  }
  EXPECT_EQ(cache.length(), n);
}

INSTANTIATE_TEST_SUITE_P(Llama, FixtureTest, ::testing::ValuesIn(cases()),
                         [](const auto& info) { return std::string(info.param.name); });

TEST(Transformer, CacheOverflowIsAnError) {
  Model m = load_model(test::fixture("tinyllama"));
  Transformer transformer(m);
  KvCache cache = transformer.new_cache(4);
  const int32_t tokens[5] = {3, 4, 5, 6, 7};
  EXPECT_THROW(transformer.forward(tokens, cache, LogitsFor::LastToken), Error);
}

TEST(Transformer, TokenOutsideVocabularyIsAnError) {
  Model m = load_model(test::fixture("tinyllama"));
  Transformer transformer(m);
  KvCache cache = transformer.new_cache(4);
  const int32_t tokens[1] = {512};
  EXPECT_THROW(transformer.forward(tokens, cache, LogitsFor::LastToken), Error);
}

}  // namespace
}  // namespace nanoserve
