// Embeddings against references. The sentence-transformers fixtures
// (tools/fixtures/make_embedding_fixtures.py): tiny Qwen3-Embedding- and gte-Qwen2-shaped
// directories, loaded as shipped (modules.json pooling, base weights without an LM head), their
// texts tokenized and embedded through the engine with each pooling, against the vectors
// sentence-transformers' modules computed in float64. And against Hugging Face: every family's
// fixture, and one laid out as a sentence-transformers directory, checked against the fixture's
// final norm rows pooled as sentence-transformers pools them (its Transformer module's output is
// that last hidden state).
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>

#include "backend/cpu/reduced_dot.h"
#include "engine/engine.h"
#include "formats/safetensors.h"
#include "test_support.h"
#include "util/error.h"

namespace nanoserve {
namespace {

double cosine(const std::vector<float>& a, const std::vector<double>& b) {
  double dot = 0, na = 0, nb = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    dot += a[i] * b[i];
    na += double(a[i]) * a[i];
    nb += b[i] * b[i];
  }
  return dot / std::sqrt(na * nb);
}

// A model without an LM head (an embedding checkpoint's base weights) refuses to generate.
void expect_no_generation(const Model& model) {
  const TensorParallel runner(model);
  Engine engine(runner, nullptr, EngineOptions{});
  try {
    engine.submit({{1, 2, 3}, {}}, [](const Event&) {});
    ADD_FAILURE() << "a generation was accepted";
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(), "this model has no LM head (an embedding model's weights): it makes embeddings, not text");
  }
}

class EmbeddingFixture : public ::testing::TestWithParam<std::string> {};

TEST_P(EmbeddingFixture, VectorsMatchSentenceTransformers) {
  const std::string dir = test::fixture(GetParam());
  const Model model = load_model(dir);
  const Tokenizer tokenizer = Tokenizer::from_file(dir);
  ASSERT_TRUE(model.pooling);
  EXPECT_EQ(model.pooling->mode, PoolingMode::Last);
  EXPECT_TRUE(model.pooling->normalize);
  std::ifstream in(dir + "/embeddings.json");
  const auto reference = nlohmann::json::parse(in);
  const TensorParallel runner(model);
  for (PoolingMode mode : {PoolingMode::Last, PoolingMode::Mean, PoolingMode::Cls}) {
    EngineOptions options;
    options.kv_cache_bytes = 64 * KvCache::bytes_per_block(model.config.kv_shape(), 16);
    options.limits.max_batched_tokens = 32;  // the long text in chunks
    Engine engine(runner, &tokenizer, options);
    std::map<uint64_t, std::vector<float>> vectors;
    std::vector<uint64_t> ids;
    for (const auto& c : reference["cases"]) {
      const std::vector<int32_t> tokens = tokenizer.encode(c["text"].get<std::string>());
      ASSERT_EQ(tokens, c["ids"].get<std::vector<int32_t>>()) << c["text"];
      ids.push_back(engine.submit({tokens, {}, Pooling{mode, true}}, [&](const Event& e) {
        if (e.finish) vectors[e.request_id] = e.embedding;
      }));
    }
    engine.run_until_idle();
    for (size_t i = 0; i < ids.size(); ++i) {
      const auto& want = reference["cases"][i][pooling_mode_name(mode)].get<std::vector<double>>();
      EXPECT_GE(cosine(vectors.at(ids[i]), want), 0.99999) << pooling_mode_name(mode) << " of text " << i;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Models, EmbeddingFixture, ::testing::Values("embed_qwen3", "embed_gte_qwen2"));

TEST(EmbeddingFixtureModel, BaseWeightsWithoutAHeadEmbedButDoNotGenerate) {
  const Model model = load_model(test::fixture("embed_gte_qwen2"));
  EXPECT_FALSE(model.config.has_lm_head);
  EXPECT_FALSE(model.config.matryoshka);
  EXPECT_TRUE(load_model(test::fixture("embed_qwen3")).config.matryoshka);
  expect_no_generation(model);
}

// The engine's embedding of `ids`, the prompt prefilled 16 tokens a step.
std::vector<float> embed(const Model& model, const std::vector<int32_t>& ids, Pooling pooling) {
  const TensorParallel runner(model);
  EngineOptions options;
  options.kv_cache_bytes = 64 * KvCache::bytes_per_block(model.config.kv_shape(), 16);
  options.limits.max_batched_tokens = 16;
  Engine engine(runner, nullptr, options);
  std::vector<float> got;
  engine.submit({ids, {}, pooling}, [&](const Event& e) {
    if (e.finish) got = e.embedding;
  });
  engine.run_until_idle();
  return got;
}

// An architecture fixture laid out as embedding models ship (Qwen3-Embedding, gte-Qwen2): the base
// model's weights without the "model." prefix and without an LM head, and sentence-transformers'
// modules.json with a Pooling module (`mode_key` set) and Normalize.
void write_sentence_transformers(const std::string& fixture, const test::ScratchDir& dir, const std::string& mode_key) {
  for (const char* file : {"config.json", "generation_config.json"}) {
    std::filesystem::copy_file(fixture + "/" + file, dir.file(file));
  }
  const SafetensorsFile weights(fixture + "/model.safetensors");
  std::vector<TensorToWrite> tensors;
  for (const auto& [name, view] : weights.tensors()) {
    if (name == "lm_head.weight") continue;
    const std::string base = name.rfind("model.", 0) == 0 ? name.substr(6) : name;
    tensors.push_back({base, view.dtype, view.shape, view.data});
  }
  write_safetensors(dir.file("model.safetensors"), tensors);
  test::write_file(dir.file("modules.json"), R"([
    {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
    {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
    {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"}])");
  std::filesystem::create_directories(dir.path() / "1_Pooling");
  test::write_file(dir.file("1_Pooling/config.json"), "{\"word_embedding_dimension\": 64, \"" + mode_key + "\": true}");
}

TEST(SentenceTransformersDirectory, LoadsAsShippedAndPoolsHuggingFacesFinalNorm) {
  // tinyllama: untied, so its head is gone; qwen3: tied, its head is the embedding.
  for (const std::string name : {"tinyllama", "qwen3"}) {
    for (const auto& [key, mode] : {std::pair{"pooling_mode_lasttoken", PoolingMode::Last},
                                    std::pair{"pooling_mode_mean_tokens", PoolingMode::Mean}}) {
      const test::ScratchDir dir;
      write_sentence_transformers(test::fixture(name), dir, key);
      const Model model = load_model(dir.path().string());
      ASSERT_TRUE(model.pooling) << name;
      EXPECT_EQ(model.pooling->mode, mode);
      EXPECT_TRUE(model.pooling->normalize);
      EXPECT_EQ(model.config.has_lm_head, name == "qwen3");
      const test::Reference reference = test::read_reference(test::fixture(name + "/reference.safetensors"));
      const std::vector<float> got = embed(model, reference.ids("input_ids"), *model.pooling);
      const double minimum = cpu::takes_reduced_dot(model.weights.embed.dtype) ? 0.9998 : 0.99999;
      EXPECT_GE(cosine(got, test::pooled(reference.floats.at("final_norm"), model.config.hidden_size, mode)), minimum)
          << name << " " << key;
      if (name == "tinyllama" && mode == PoolingMode::Last) expect_no_generation(model);
    }
  }
}

// Every family's fixture: the engine's embeddings, with each pooling, against Hugging Face's final
// norm rows of the fixture's prompt (float64), pooled and normalized here as sentence-transformers'
// Pooling and Normalize modules do: its Transformer module's output is that last hidden state.
class FamilyEmbedding : public ::testing::TestWithParam<test::ModelCase> {};

TEST_P(FamilyEmbedding, PoolsHuggingFacesFinalNorm) {
  const test::ModelCase& c = GetParam();
  const test::Reference reference = test::read_reference(c.reference);
  const Model model = load_model(c.model_path);
  const std::vector<int32_t> ids = reference.ids("input_ids");
  if (static_cast<int64_t>(ids.size()) > model.config.max_positions) GTEST_SKIP() << "the prompt passes the context";
  // Float32 products (float32 weights, or NANOSERVE_CPU_F32=1: the embeddings.float32_reference
  // test): the issue's 0.99999. bf16 weights on the default path round activations to bf16 for
  // the bf16 dot products (2^-8 per value, as the GPU does): 0.9998, which a wrong kernel or
  // pooling misses by far.
  const double minimum = cpu::takes_reduced_dot(model.weights.embed.dtype) ? 0.9998 : 0.99999;
  for (PoolingMode mode : {PoolingMode::Last, PoolingMode::Mean, PoolingMode::Cls}) {
    const std::vector<float> got = embed(model, ids, Pooling{mode, true});
    ASSERT_EQ(got.size(), static_cast<size_t>(model.config.hidden_size));
    EXPECT_GE(cosine(got, test::pooled(reference.floats.at("final_norm"), model.config.hidden_size, mode)), minimum)
        << pooling_mode_name(mode);
    double norm = 0;
    for (float x : got) norm += double(x) * x;
    EXPECT_NEAR(norm, 1.0, 1e-5);
  }
}

INSTANTIATE_TEST_SUITE_P(Families, FamilyEmbedding, ::testing::ValuesIn(test::model_cases()),
                         [](const auto& info) { return info.param.name; });

}  // namespace
}  // namespace nanoserve
