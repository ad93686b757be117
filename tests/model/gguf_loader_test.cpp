// GGUF files as models: the demo's bf16 file against its safetensors twin, quantized weights kept in
// place, and bad files, each a clear error. (The converted family fixtures run in
// transformer_test.cpp beside their Hugging Face twins.)
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "backend/cpu/ops.h"
#include "backend/cpu/reduced_dot.h"
#include "engine/sampler.h"
#include "gguf_builder.h"
#include "model/loader.h"
#include "model/transformer.h"
#include "test_support.h"
#include "util/error.h"

namespace nanoserve {
namespace {

std::vector<float> logits_of(const Model& model, const std::vector<int32_t>& ids) {
  Transformer transformer(model);
  SequenceCache cache = transformer.new_cache(static_cast<int64_t>(ids.size()));
  return transformer.forward(ids, cache, LogitsFor::AllTokens);
}

std::vector<int32_t> greedy(const Model& model, std::vector<int32_t> ids, int steps) {
  Transformer transformer(model);
  SequenceCache cache = transformer.new_cache(static_cast<int64_t>(ids.size()) + steps);
  auto logits = transformer.forward(ids, cache, LogitsFor::LastToken);
  std::vector<int32_t> out;
  for (int i = 0; i < steps; ++i) {
    out.push_back(argmax(logits));
    const int32_t token[1] = {out.back()};
    logits = transformer.forward(token, cache, LogitsFor::LastToken);
  }
  return out;
}

bool inside(const TensorView& t, const MappedFile& file) {
  return t.data >= file.data() && t.data + t.nbytes <= file.data() + file.size();
}

// The same bf16 weights (q/k rows permuted by the converter, rotated as interleaved pairs here) on
// both sides: only the order of float32 sums inside q.k differs, so on the float32 path the logits
// agree to float32 rounding (1e-4, the fixtures' logit tolerance). On the default path the products
// round activations to bf16, which turns some of those last-bit differences into whole bf16 steps
// (2^-8 relative) downstream: 1e-2 of the largest |logit|. Greedy text is identical either way.
TEST(GgufModel, DemoBf16MatchesSafetensors) {
  const Model gguf = load_model(test::demo_model_dir() + "/demo-bf16.gguf");
  const Model hf = load_model(test::demo_model_dir());
  EXPECT_EQ(gguf.arch.rope_pairs, RopePairs::Interleaved);
  EXPECT_EQ(gguf.weights.layers[0].q.weight.dtype, DType::BF16);
  EXPECT_TRUE(gguf.config.tied_embeddings);
  EXPECT_EQ(gguf.config.eos_token_ids, hf.config.eos_token_ids);
  const auto ref = test::read_reference(test::fixture("demo/reference.safetensors"));
  const std::vector<int32_t> ids(ref.ints.at("input_ids").begin(), ref.ints.at("input_ids").end());
  const auto a = logits_of(gguf, ids), b = logits_of(hf, ids);
  ASSERT_EQ(a.size(), b.size());
  const float diff = test::max_abs_diff(a.data(), b.data(), a.size());
  float scale = 0;
  for (float v : b) scale = std::max(scale, std::abs(v));
  EXPECT_LE(diff, cpu::takes_reduced_dot(DType::BF16) ? 1e-2f * scale : 1e-4f);
  std::printf("  demo-bf16.gguf vs safetensors: max abs logit diff %.3g over %zu logits\n", diff, a.size());
  const std::vector<int32_t> prompt(ref.ints.at("greedy_prompt").begin(), ref.ints.at("greedy_prompt").end());
  EXPECT_EQ(greedy(gguf, prompt, 32), greedy(hf, prompt, 32));
}

// Q4_K_M mixes q4_K and q6_K tensors; they are used where they lie in the mapped file.
TEST(GgufModel, QuantizedWeightsStayInTheMappedFile) {
  const Model m = load_model(test::demo_model_dir() + "/demo-q4_k_m.gguf");
  EXPECT_EQ(m.weights.embed.dtype, DType::Q6_K);
  EXPECT_EQ(m.weights.layers[0].q.weight.dtype, DType::Q4_K);
  EXPECT_EQ(m.weights.lm_head.weight.data, m.weights.embed.data);
  for (const auto& layer : m.weights.layers) {
    for (const Linear* l : {&layer.q, &layer.k, &layer.v, &layer.o, &layer.gate, &layer.up, &layer.down}) {
      EXPECT_TRUE(inside(l->weight, m.gguf->file())) << l->weight.name;
    }
  }
}

// A one-layer llama of hidden 32 (F32 weights of small deterministic values), with one thing changed.
struct TinyLlama {
  std::string arch = "llama";
  uint32_t layers = 1;   // block_count (the file holds tensors for one layer)
  uint32_t experts = 0;  // > 0: the MLP as that many identical stacked experts, all used (Mixtral's layout)
  uint32_t heads_kv = 2;
  uint32_t q_type = 0;  // ggml type of attn_q
  std::string extra_tensor;
  bool drop_ffn_down = false;
  bool block_count_as_string = false;
  std::optional<uint32_t> pooling_type;  // an embedding model's (llama.cpp's values)
};

std::string tiny_llama(const TinyLlama& o) {
  test::GgufBuilder b;
  b.kv("general.architecture", 8).str(o.arch);
  if (o.block_count_as_string) {
    b.kv(o.arch + ".block_count", 8).str("1");
  } else {
    b.kv(o.arch + ".block_count", 4).u32(o.layers);
  }
  b.kv(o.arch + ".embedding_length", 4).u32(32);
  b.kv(o.arch + ".feed_forward_length", 4).u32(64);
  b.kv(o.arch + ".attention.head_count", 4).u32(2);
  b.kv(o.arch + ".attention.head_count_kv", 4).u32(o.heads_kv);
  b.kv(o.arch + ".attention.layer_norm_rms_epsilon", 6).f32(1e-5f);
  b.kv(o.arch + ".context_length", 4).u32(64);
  if (o.pooling_type) b.kv(o.arch + ".pooling_type", 4).u32(*o.pooling_type);
  if (o.experts) b.kv(o.arch + ".expert_count", 4).u32(o.experts).kv(o.arch + ".expert_used_count", 4).u32(o.experts);
  struct T {
    T(std::string n, std::vector<uint64_t> d, uint32_t t = 0, std::string of = "")
        : name(std::move(n)), dims(std::move(d)), type(t), values_of(std::move(of)) {}
    std::string name;
    std::vector<uint64_t> dims;  // ggml order
    uint32_t type;
    std::string values_of;  // the tensor whose values it repeats (an expert's copy of the MLP), or "zeros"
  };
  std::vector<T> tensors = {{"token_embd.weight", {32, 8}},         {"output_norm.weight", {32}},
                            {"blk.0.attn_norm.weight", {32}},       {"blk.0.attn_q.weight", {32, 32}, o.q_type},
                            {"blk.0.attn_k.weight", {32, 32}},      {"blk.0.attn_v.weight", {32, 32}},
                            {"blk.0.attn_output.weight", {32, 32}}, {"blk.0.ffn_norm.weight", {32}},
                            {"blk.0.ffn_gate.weight", {32, 64}},    {"blk.0.ffn_up.weight", {32, 64}}};
  if (!o.drop_ffn_down) tensors.push_back({"blk.0.ffn_down.weight", {64, 32}});
  if (!o.extra_tensor.empty()) tensors.push_back({o.extra_tensor, {32}});
  if (o.experts) {
    tensors.erase(tensors.end() - 3, tensors.end());
    tensors.push_back({"blk.0.ffn_gate_inp.weight", {32, o.experts}, 0, "zeros"});  // equal router probabilities
    for (const char* proj : {"gate", "up", "down"}) {
      const std::vector<uint64_t> dims = proj == std::string("down") ? std::vector<uint64_t>{64, 32, o.experts}
                                                                     : std::vector<uint64_t>{32, 64, o.experts};
      tensors.push_back(
          {std::string("blk.0.ffn_") + proj + "_exps.weight", dims, 0, std::string("blk.0.ffn_") + proj + ".weight"});
    }
  }
  std::string data;
  for (const auto& t : tensors) {
    uint64_t elements = 1;
    for (uint64_t d : t.dims) elements *= d;
    const uint64_t bytes = t.type == 0 ? elements * 4 : elements / 32 * 18;  // f32, or iq4_nl blocks
    b.tensor(t.name, t.dims, t.type, data.size());
    std::string bytes_of(bytes, '\0');
    if (t.type == 0 && t.values_of != "zeros") {
      const std::string& name = t.values_of.empty() ? t.name : t.values_of;
      const uint64_t period = t.values_of.empty() ? elements : elements / o.experts;  // each expert repeats it
      for (uint64_t i = 0; i < elements; ++i) {
        const float v = 0.3f * std::sin(static_cast<float>(i % period) * 0.7f + static_cast<float>(name.size()));
        std::memcpy(bytes_of.data() + i * 4, &v, 4);
      }
    }
    data += bytes_of;
    data.append((32 - bytes % 32) % 32, '\0');
  }
  return b.finish(data);
}

std::string load_error(const std::string& image) {
  test::ScratchDir dir;
  test::write_file(dir.file("m.gguf"), image);
  try {
    load_model(dir.file("m.gguf"));
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

Model load_image(const test::ScratchDir& dir, const std::string& name, const std::string& image) {
  test::write_file(dir.file(name), image);
  return load_model(dir.file(name));
}

// A llama file with ffn_*_exps tensors (as Mixtral's) is a mixture of experts: two identical copies
// of the MLP, both used at weight 1/2, give the dense model's logits exactly.
TEST(GgufModel, StackedExpertsAreAMixture) {
  test::ScratchDir dir;
  TinyLlama moe;
  moe.experts = 2;
  const Model dense = load_image(dir, "dense.gguf", tiny_llama({}));
  const Model mixture = load_image(dir, "moe.gguf", tiny_llama(moe));
  ASSERT_EQ(mixture.arch.mlp, MlpKind::Moe);
  EXPECT_EQ(mixture.arch.moe.top_k, 2);
  EXPECT_TRUE(mixture.arch.moe.norm_topk_prob);
  const auto& experts = mixture.weights.layers[0].experts;
  ASSERT_EQ(experts.size(), 2u);
  EXPECT_EQ(experts[1].down.weight.data, experts[0].down.weight.data + 32 * 64 * 4);  // slice 1 of [2, 32, 64]
  const std::vector<int32_t> ids = {1, 5, 2, 7, 3};
  const auto a = logits_of(dense, ids), b = logits_of(mixture, ids);
  EXPECT_GT(*std::max_element(a.begin(), a.end()), 0.01f);
  EXPECT_EQ(a, b);
}

TEST(GgufModel, BadModelsAreClearErrors) {
  auto expect = [](void (*edit)(TinyLlama&), const std::string& message) {
    TinyLlama o;
    edit(o);
    const std::string err = load_error(tiny_llama(o));
    EXPECT_NE(err.find(message), std::string::npos) << err;
  };
  expect([](TinyLlama& o) { o.arch = "mamba"; },
         "unsupported architecture: general.architecture 'mamba' (supported: llama, qwen2");
  expect([](TinyLlama& o) { o.heads_kv = 1; },
         "blk.0.attn_k.weight: shape [32, 32], expected [16, 32] (num_key_value_heads=1, head_dim=16");
  expect([](TinyLlama& o) { o.q_type = 20; }, "blk.0.attn_q.weight: tensor type iq4_nl is not supported");
  expect([](TinyLlama& o) { o.extra_tensor = "blk.0.attn_sinks.weight"; },
         "blk.0.attn_sinks.weight: unexpected tensor, not a weight of a 1-layer llama model");
  expect([](TinyLlama& o) { o.drop_ffn_down = true; },
         "blk.0.ffn_down.weight: missing from the checkpoint (expected shape [32, 64])");
  expect([](TinyLlama& o) { o.block_count_as_string = true; },
         "metadata llama.block_count is string, expected an integer");
  expect([](TinyLlama& o) { o.layers = 100000000; },
         "num_hidden_layers 100000000 with only 11 tensors in the checkpoint");
  expect([](TinyLlama& o) { o.pooling_type = 4; }, "llama.pooling_type 4 is not supported (1 mean, 2 cls, 3 last)");
}

// llama.cpp's pooling_type makes the file an embedding model, as a modules.json does a directory.
TEST(GgufModel, PoolingTypeIsTheEmbeddingPooling) {
  test::ScratchDir dir;
  EXPECT_FALSE(load_image(dir, "plain.gguf", tiny_llama({})).pooling);
  for (const auto& [type, mode] :
       {std::pair{1u, PoolingMode::Mean}, std::pair{2u, PoolingMode::Cls}, std::pair{3u, PoolingMode::Last}}) {
    TinyLlama o;
    o.pooling_type = type;
    const Model model = load_image(dir, "embed.gguf", tiny_llama(o));
    ASSERT_TRUE(model.pooling) << type;
    EXPECT_EQ(model.pooling->mode, mode);
    EXPECT_TRUE(model.pooling->normalize);
  }
  TinyLlama none;
  none.pooling_type = 0;
  EXPECT_FALSE(load_image(dir, "none.gguf", tiny_llama(none)).pooling);
}

}  // namespace
}  // namespace nanoserve
