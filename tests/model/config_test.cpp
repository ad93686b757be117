#include "model/config.h"

#include <gtest/gtest.h>

#include "test_support.h"
#include "util/error.h"

namespace nanoserve {
namespace {

using json = nlohmann::json;

json minimal_llama() {
  return json::parse(R"({"model_type": "llama", "hidden_size": 2048, "intermediate_size": 8192,
    "num_hidden_layers": 16, "num_attention_heads": 32, "num_key_value_heads": 8, "vocab_size": 128256,
    "rms_norm_eps": 1e-5})");
}

void expect_config_error(const json& j, const std::string& needle) {
  try {
    parse_model_config(j, "dir/config.json");
    FAIL() << "no error; wanted: " << needle;
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("dir/config.json"), std::string::npos) << e.what();
  }
}

TEST(ModelConfig, DefaultsAndDerivedHeadDim) {
  ModelConfig c = parse_model_config(minimal_llama(), "config.json");
  EXPECT_EQ(c.head_dim, 64);
  EXPECT_EQ(c.kv_heads, 8);
  EXPECT_EQ(c.max_positions, 2048);
  EXPECT_FALSE(c.tied_embeddings);
  EXPECT_EQ(c.rope.scaling, RopeScaling::None);
  EXPECT_DOUBLE_EQ(c.rope.theta, 10000.0);
}

// Found by fuzz_config: the factor read from the top level was reported through the
// rope_parameters object, which does not hold it (an assertion in the JSON library).
TEST(ModelConfig, PartialRotaryFactorAboveOneIsAnErrorWhereverItIs) {
  json j = minimal_llama();
  j["partial_rotary_factor"] = 24;
  j["rope_parameters"] = {{"rope_theta", 10000.0}, {"rope_type", "default"}};
  expect_config_error(j, "partial_rotary_factor must be at most 1, got 24");
  j.erase("rope_parameters");
  expect_config_error(j, "partial_rotary_factor must be at most 1, got 24");
}

TEST(ModelConfig, ExplicitHeadDimAndMissingKvHeads) {
  json j = minimal_llama();
  j["head_dim"] = 128;
  j.erase("num_key_value_heads");
  ModelConfig c = parse_model_config(j, "config.json");
  EXPECT_EQ(c.head_dim, 128);
  EXPECT_EQ(c.kv_heads, 32);
}

TEST(ModelConfig, Llama3ScalingInOlderForm) {
  json j = minimal_llama();
  j["rope_theta"] = 500000.0;
  j["rope_scaling"] = json::parse(R"({"rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0,
    "high_freq_factor": 4.0, "original_max_position_embeddings": 8192})");
  ModelConfig c = parse_model_config(j, "config.json");
  EXPECT_DOUBLE_EQ(c.rope.theta, 500000.0);
  EXPECT_EQ(c.rope.scaling, RopeScaling::Llama3);
  EXPECT_DOUBLE_EQ(c.rope.factor, 32.0);
  EXPECT_EQ(c.rope.original_max_positions, 8192);
}

TEST(ModelConfig, Llama3ScalingInTransformers5Form) {
  json j = minimal_llama();
  j["rope_parameters"] = json::parse(R"({"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0,
    "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 8192})");
  ModelConfig c = parse_model_config(j, "config.json");
  EXPECT_DOUBLE_EQ(c.rope.theta, 500000.0);
  EXPECT_DOUBLE_EQ(c.rope.factor, 8.0);
}

TEST(ModelConfig, LinearScalingWithLegacyTypeKey) {
  json j = minimal_llama();
  j["rope_scaling"] = json::parse(R"({"type": "linear", "factor": 4.0})");
  ModelConfig c = parse_model_config(j, "config.json");
  EXPECT_EQ(c.rope.scaling, RopeScaling::Linear);
  EXPECT_DOUBLE_EQ(c.rope.factor, 4.0);
}

TEST(ModelConfig, TokenIdsAsIntOrList) {
  json j = minimal_llama();
  j["bos_token_id"] = 128000;
  j["eos_token_id"] = json::array({128001, 128008, 128009});
  ModelConfig c = parse_model_config(j, "config.json");
  EXPECT_EQ(c.bos_token_id, 128000);
  EXPECT_EQ(c.eos_token_ids, (std::vector<int64_t>{128001, 128008, 128009}));
  j["eos_token_id"] = 2;
  EXPECT_EQ(parse_model_config(j, "config.json").eos_token_ids, (std::vector<int64_t>{2}));
}

TEST(ModelConfig, GenerationConfigOverridesEos) {
  test::ScratchDir dir;
  test::write_file(dir.file("generation_config.json"), R"({"bos_token_id": 5, "eos_token_id": [6, 7]})");
  ModelConfig c = parse_model_config(minimal_llama(), "config.json");
  apply_generation_config(c, dir.file("generation_config.json"));
  EXPECT_EQ(c.bos_token_id, 5);
  EXPECT_EQ(c.eos_token_ids, (std::vector<int64_t>{6, 7}));
  apply_generation_config(c, dir.file("absent.json"));  // a missing file changes nothing
  EXPECT_EQ(c.bos_token_id, 5);
}

TEST(ModelConfig, YarnWithDefaults) {
  json j = minimal_llama();
  j["rope_scaling"] = json::parse(R"({"type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32768})");
  RopeConfig r = parse_model_config(j, "config.json").rope;
  EXPECT_EQ(r.scaling, RopeScaling::Yarn);
  EXPECT_DOUBLE_EQ(r.factor, 4.0);
  EXPECT_DOUBLE_EQ(r.beta_fast, 32);
  EXPECT_DOUBLE_EQ(r.beta_slow, 1);
  EXPECT_TRUE(r.truncate);
  EXPECT_FALSE(r.attention_factor.has_value());
}

// Phi-3 files keep original_max_position_embeddings at the top level; factor defaults to the ratio.
TEST(ModelConfig, LongRopeFromOlderPhi3Layout) {
  json j = minimal_llama();
  j["max_position_embeddings"] = 131072;
  j["original_max_position_embeddings"] = 4096;
  j["partial_rotary_factor"] = 0.75;
  j["rope_scaling"] = json::parse(R"({"type": "longrope", "short_factor": [1.0, 1.1], "long_factor": [2.0, 3.0]})");
  RopeConfig r = parse_model_config(j, "config.json").rope;
  EXPECT_EQ(r.scaling, RopeScaling::LongRope);
  EXPECT_EQ(r.original_max_positions, 4096);
  EXPECT_DOUBLE_EQ(r.factor, 32.0);
  EXPECT_DOUBLE_EQ(r.partial_rotary_factor, 0.75);
  EXPECT_EQ(r.long_factor, (std::vector<double>{2.0, 3.0}));
}

TEST(ModelConfigErrors, LongRopeWithoutFactors) {
  json j = minimal_llama();
  j["rope_parameters"] = json::parse(R"({"rope_type": "longrope", "original_max_position_embeddings": 32,
    "short_factor": [1.0]})");
  expect_config_error(j, "missing field 'long_factor'");
}

TEST(ModelConfigErrors, MissingField) {
  json j = minimal_llama();
  j.erase("hidden_size");
  expect_config_error(j, "missing field 'hidden_size'");
}

TEST(ModelConfigErrors, WrongType) {
  json j = minimal_llama();
  j["num_hidden_layers"] = "sixteen";
  expect_config_error(j, "field 'num_hidden_layers' must be a positive integer, got \"sixteen\"");
}

TEST(ModelConfigErrors, NonPositive) {
  json j = minimal_llama();
  j["rms_norm_eps"] = -1;
  expect_config_error(j, "field 'rms_norm_eps' must be a positive number");
}

TEST(ModelConfigErrors, HeadsNotMultipleOfKvHeads) {
  json j = minimal_llama();
  j["num_key_value_heads"] = 5;
  expect_config_error(j, "must be a multiple of num_key_value_heads (5)");
}

TEST(ModelConfigErrors, UnknownRopeType) {
  json j = minimal_llama();
  j["rope_scaling"] = json::parse(R"({"rope_type": "su", "factor": 2.0})");
  expect_config_error(
      j, "unsupported RoPE scaling type 'su' (supported: default, linear, llama3, yarn, dynamic, longrope)");
}

TEST(ModelConfigErrors, Llama3MissingParameter) {
  json j = minimal_llama();
  j["rope_parameters"] = json::parse(R"({"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0})");
  expect_config_error(j, "missing field 'high_freq_factor'");
}

// Issue 26: "hidden_size": [[[...]]] 300k levels deep killed `inspect` and `generate` with SIGSEGV
// while the error message printed it. A long bad value prints as a short excerpt.
TEST(ModelConfigErrors, DeepOrHugeValuesAreShortErrors) {
  test::ScratchDir dir;
  test::write_file(dir.file("config.json"), R"({"model_type": "llama", "hidden_size": )" + std::string(300000, '[') +
                                                std::string(300000, ']') + "}");
  try {
    read_model_config(dir.file("config.json"));
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()), dir.file("config.json") + ": nested deeper than 128 levels");
  }
  json j = minimal_llama();
  j["hidden_size"] = json::array();
  for (int i = 0; i < 100000; ++i) j["hidden_size"].push_back(i);
  expect_config_error(j, "field 'hidden_size' must be a positive integer, got [0,1,2,3,");
  try {
    parse_model_config(j, "config.json");
    FAIL();
  } catch (const Error& e) {
    EXPECT_LT(std::string(e.what()).size(), 300u) << e.what();
  }
}

TEST(ModelConfigErrors, NotJson) {
  test::ScratchDir dir;
  test::write_file(dir.file("config.json"), "{\"model_type\": ");
  try {
    read_model_config(dir.file("config.json"));
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("not valid JSON"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace nanoserve
