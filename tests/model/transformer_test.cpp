// The forward pass against Hugging Face transformers run in float64 (tests/fixtures/README.md):
// every captured component, the full logits, and the greedy continuation.
#include "model/transformer.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>

#include "backend/cpu/ops.h"
#include "backend/cpu/reduced_dot.h"
#include "engine/sampler.h"
#include "test_support.h"
#include "util/error.h"

namespace nanoserve {
namespace {

// The float32 path (float32 models, and every model under NANOSERVE_CPU_F32=1, avx2 or baseline):
// Components: 1e-5, relative to the component's largest value once that exceeds 1. The reference is
// float64 but transformers rounds to float32 inside every RMSNorm and softmax, so at |x| ~ 30 (Gemma's
// residual stream, embeddings x8) the reference itself carries ~3e-5 of float32 rounding.
// Logits: 1e-4 absolute.
constexpr float kComponentTolerance = 1e-5f;
constexpr float kLogitsTolerance = 1e-4f;
// The default path of bf16 models, whose products round the activations to bf16 for vdpbf16ps
// (backend/cpu/reduced_dot.h): 2^-8 relative per value, which sums over a row and a few layers
// carry to about 1% of a tensor's scale, as on the GPU. Components and logits: 4e-2 of their
// largest magnitude (the GPU's tolerance); a wrong kernel misses by 10-100%.
constexpr float kReducedTolerance = 4e-2f;

bool reduced_precision(const Model& model) { return cpu::takes_reduced_dot(model.weights.embed.dtype); }

using Case = test::ModelCase;

// q or k after RoPE [tokens, heads * head_dim] from interleaved pairs (2i, 2i + 1) back to the
// halves layout (i, i + head_dim/2) of the reference: a GGUF of a Llama model has its q/k rows permuted.
std::vector<float> halves_layout(const std::vector<float>& x, int64_t head_dim) {
  std::vector<float> out(x.size());
  const int64_t half = head_dim / 2;
  for (size_t head = 0; head < x.size() / static_cast<size_t>(head_dim); ++head) {
    const float* in = x.data() + head * static_cast<size_t>(head_dim);
    float* o = out.data() + head * static_cast<size_t>(head_dim);
    for (int64_t i = 0; i < half; ++i) {
      o[i] = in[2 * i];
      o[i + half] = in[2 * i + 1];
    }
  }
  return out;
}

class FixtureTest : public ::testing::TestWithParam<Case> {
 protected:
  void SetUp() override {
    model_ = std::make_unique<Model>(load_model(GetParam().model_path));
    ref_ = test::read_reference(GetParam().reference);
  }

  std::unique_ptr<Model> model_;
  test::Reference ref_;
};

TEST_P(FixtureTest, ComponentsAndLogitsMatchReference) {
  Transformer transformer(*model_);
  const auto input = ref_.ids("input_ids");
  SequenceCache cache = transformer.new_cache(static_cast<int64_t>(input.size()));
  std::map<std::string, std::vector<float>> got;
  ActivationSink sink = [&](const std::string& name, const float* data, int64_t rows, int64_t cols) {
    got[name].assign(data, data + rows * cols);
  };
  const auto logits = transformer.forward(input, cache, LogitsFor::AllTokens, &sink);
  got["logits"] = logits;
  if (model_->arch.rope_pairs == RopePairs::Interleaved) {
    for (const char* name : {"layer0.q_rope", "layer0.k_rope"})
      got[name] = halves_layout(got[name], model_->config.head_dim);
  }

  size_t compared = 0;
  float worst_component = 0, worst_relative = 0, logits_diff = 0;
  for (const auto& [name, expected] : ref_.floats) {
    if (name == "greedy_margins") continue;
    ASSERT_TRUE(got.count(name)) << "forward pass did not report " << name;
    ASSERT_EQ(got[name].size(), expected.size()) << name;
    const float diff = test::max_abs_diff(got[name].data(), expected.data(), expected.size());
    float scale = 1;
    for (float v : expected) scale = std::max(scale, std::abs(v));
    const float tolerance = reduced_precision(*model_) ? kReducedTolerance * scale
                            : name == "logits"         ? kLogitsTolerance
                                                       : kComponentTolerance * scale;
    EXPECT_LE(diff, tolerance) << GetParam().name << " " << name << " (largest reference value " << scale << ")";
    RecordProperty(name, std::to_string(diff));
    if (name == "logits") {
      logits_diff = diff;
    } else {
      worst_component = std::max(worst_component, diff);
      worst_relative = std::max(worst_relative, diff / scale);
    }
    ++compared;
  }
  EXPECT_GE(compared, 8u);
  std::printf("  %-16s max abs diff: components %.3g (%.3g relative to scale), logits %.3g\n", GetParam().name.c_str(),
              worst_component, worst_relative, logits_diff);
}

// Greedy decoding with the KV cache, one token at a time, reproduces the reference continuation
// (made with a full forward per step). Steps whose top-2 margin is below 1e-3 are too close to call
// (on the bf16 path: below twice its logits tolerance).
TEST_P(FixtureTest, GreedyContinuationMatchesReference) {
  Transformer transformer(*model_);
  const auto prompt = ref_.ids("greedy_prompt");
  const auto expected = ref_.ints.at("greedy_tokens");
  const auto& margins = ref_.floats.at("greedy_margins");
  float logit_scale = 1;
  for (float v : ref_.floats.at("logits")) logit_scale = std::max(logit_scale, std::abs(v));
  const float too_close = reduced_precision(*model_) ? 2 * kReducedTolerance * logit_scale : 1e-3f;
  SequenceCache cache = transformer.new_cache(static_cast<int64_t>(prompt.size() + expected.size()));
  auto logits = transformer.forward(prompt, cache, LogitsFor::LastToken);
  for (size_t step = 0; step < expected.size(); ++step) {
    const int32_t next = argmax(logits);
    if (margins[step] > too_close) {
      ASSERT_EQ(next, expected[step]) << GetParam().name << " step " << step;
    }
    const int32_t token[1] = {static_cast<int32_t>(expected[step])};
    logits = transformer.forward(token, cache, LogitsFor::LastToken);
  }
}

// Prefill in chunks and decode one token at a time must give exactly the logits of one full forward:
// every kernel computes a row the same way whatever else is in the batch.
TEST_P(FixtureTest, IncrementalDecodeEqualsFullForward) {
  if (rope_depends_on_length(model_->config.rope)) {
    GTEST_SKIP() << "RoPE frequencies depend on the sequence length (dynamic, longrope): a cached key keeps the "
                    "rotation of the length it was computed at, as in transformers";
  }
  Transformer transformer(*model_);
  const auto input = ref_.ids("input_ids");
  const int64_t n = static_cast<int64_t>(input.size()), vocab = model_->config.vocab_size;
  SequenceCache full_cache = transformer.new_cache(n);
  const auto full = transformer.forward(input, full_cache, LogitsFor::AllTokens);

  SequenceCache cache = transformer.new_cache(n);
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

INSTANTIATE_TEST_SUITE_P(Families, FixtureTest, ::testing::ValuesIn(test::model_cases()),
                         [](const auto& info) { return info.param.name; });

TEST(Transformer, CacheOverflowIsAnError) {
  Model m = load_model(test::fixture("tinyllama"));
  Transformer transformer(m);
  SequenceCache cache = transformer.new_cache(4);  // rounded up to one block of 16 positions
  EXPECT_EQ(cache.capacity(), 16);
  const std::vector<int32_t> tokens(17, 3);
  EXPECT_THROW(transformer.forward(tokens, cache, LogitsFor::LastToken), Error);
}

TEST(Transformer, TokenOutsideVocabularyIsAnError) {
  Model m = load_model(test::fixture("tinyllama"));
  Transformer transformer(m);
  SequenceCache cache = transformer.new_cache(4);
  const int32_t tokens[1] = {512};
  EXPECT_THROW(transformer.forward(tokens, cache, LogitsFor::LastToken), Error);
}

}  // namespace
}  // namespace nanoserve
