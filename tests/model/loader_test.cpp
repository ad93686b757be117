#include "model/loader.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <functional>
#include <nlohmann/json.hpp>

#include "formats/safetensors.h"
#include "model/transformer.h"
#include "test_support.h"
#include "util/error.h"

namespace nanoserve {
namespace {

using json = nlohmann::json;

// An editable in-memory copy of a checkpoint's tensors.
struct OwnedTensor {
  std::string name;
  DType dtype;
  Shape shape;
  std::vector<uint8_t> bytes;
};

std::vector<OwnedTensor> read_tensors(const std::string& path) {
  SafetensorsFile file(path);
  std::vector<OwnedTensor> out;
  for (const auto& [name, t] : file.tensors()) out.push_back({name, t.dtype, t.shape, {t.data, t.data + t.nbytes}});
  return out;
}

// Copies the tinyllama fixture into a scratch directory, with its tensors edited by `edit`.
void write_variant(const test::ScratchDir& dir, const std::function<void(std::vector<OwnedTensor>&)>& edit) {
  test::copy_dir(test::fixture("tinyllama"), dir.path().string());
  auto tensors = read_tensors(test::fixture("tinyllama/model.safetensors"));
  edit(tensors);
  std::vector<TensorToWrite> out;
  for (const auto& t : tensors) out.push_back({t.name, t.dtype, t.shape, t.bytes.data()});
  write_safetensors(dir.file("model.safetensors"), out);
}

void edit_config(const test::ScratchDir& dir, const std::function<void(json&)>& edit) {
  json j = json::parse(test::read_file(dir.file("config.json")));
  edit(j);
  test::write_file(dir.file("config.json"), j.dump());
}

std::string load_error(const std::string& dir) {
  try {
    load_model(dir, {.prefetch = false});
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

TEST(Loader, BindsEveryWeightToTheRightBytes) {
  Model m = load_model(test::fixture("tinyllama"));
  SafetensorsFile file(test::fixture("tinyllama/model.safetensors"));
  const TensorView& k1 = m.weights.layers[1].k.weight;
  const TensorView& disk = file.tensors().at("model.layers.1.self_attn.k_proj.weight");
  ASSERT_EQ(k1.nbytes, disk.nbytes);
  EXPECT_EQ(std::memcmp(k1.data, disk.data, disk.nbytes), 0);
  EXPECT_EQ(k1.name, "layers.1.attn.k");
  EXPECT_EQ(k1.shape, (Shape{16, 64}));  // kv_heads 2 x head_dim 8 (GQA 4:1)
  EXPECT_NE(m.weights.lm_head.weight.data, m.weights.embed.data) << "tinyllama has a separate LM head";
}

TEST(Loader, TiedHeadIsAnAliasOfTheEmbedding) {
  for (const char* dir : {"llama32"}) {
    Model m = load_model(test::fixture(dir));
    EXPECT_TRUE(m.config.tied_embeddings);
    EXPECT_EQ(m.weights.lm_head.weight.data, m.weights.embed.data) << "same storage, not a copy";
    EXPECT_EQ(m.weights.lm_head.weight.shape, m.weights.embed.shape);
  }
  Model demo = load_model(test::demo_model_dir());
  EXPECT_EQ(demo.weights.lm_head.weight.data, demo.weights.embed.data);
}

TEST(Loader, ShardedCheckpoint) {
  Model m = load_model(test::fixture("sharded"));
  EXPECT_EQ(m.weights.layers.size(), 3u);
  EXPECT_EQ(m.weights.layers[2].down.weight.dtype, DType::F16);
}

// Fused tensors are split by views into the mapped file: no copies.
TEST(Loader, FusedQkvAndGateUpAreViews) {
  Model m = load_model(test::fixture("phi3"));
  const auto& on_disk = m.checkpoint->tensors();
  const TensorView& qkv = on_disk.at("model.layers.1.self_attn.qkv_proj.weight");  // [128, 64] bf16
  const LayerWeights& l = m.weights.layers[1];
  EXPECT_EQ(l.q.weight.data, qkv.data);
  EXPECT_EQ(l.k.weight.data, qkv.data + 64 * 64 * 2);  // after 64 rows of q
  EXPECT_EQ(l.v.weight.data, qkv.data + 96 * 64 * 2);
  EXPECT_EQ(l.k.weight.shape, (Shape{32, 64}));
  const TensorView& gate_up = on_disk.at("model.layers.1.mlp.gate_up_proj.weight");
  EXPECT_EQ(l.gate.weight.data, gate_up.data);
  EXPECT_EQ(l.up.weight.data, gate_up.data + 128 * 64 * 2);
}

// GPT-2 stores c_attn as [in, out]: q, k and v are column ranges sharing the row stride.
TEST(Loader, Conv1DColumnViews) {
  Model m = load_model(test::fixture("gpt2"));
  const LayerWeights& l = m.weights.layers[0];
  EXPECT_TRUE(l.k.in_out);
  EXPECT_EQ(l.k.weight.shape, (Shape{64, 64}));
  EXPECT_EQ(l.k.weight.row_stride, 192);
  EXPECT_EQ(l.k.weight.data, l.q.weight.data + 64 * 4);
  EXPECT_EQ(l.v.bias.data, l.q.bias.data + 128 * 4);
  EXPECT_EQ(m.weights.lm_head.weight.data, m.weights.embed.data);
}

TEST(Loader, FamilyOptionsFromConfig) {
  Model gemma = load_model(test::fixture("gemma2"));
  EXPECT_EQ(gemma.arch.norm, NormKind::RmsPlusOne);
  EXPECT_FLOAT_EQ(gemma.arch.attn_scale, static_cast<float>(1 / std::sqrt(24.0)));
  EXPECT_EQ(gemma.arch.layers[0].sliding_window, 8);
  EXPECT_EQ(gemma.arch.layers[1].sliding_window, 0);
  Model olmoe = load_model(test::fixture("olmoe_norm_topk"));
  EXPECT_EQ(olmoe.arch.moe.experts, 8);
  EXPECT_EQ(olmoe.arch.moe.top_k, 3);
  EXPECT_TRUE(olmoe.arch.moe.norm_topk_prob);
  EXPECT_FLOAT_EQ(olmoe.arch.clip_qkv, 1.0f);
  Model gemma3 = load_model(test::fixture("gemma3"));
  ASSERT_TRUE(gemma3.arch.local_rope.has_value());
  EXPECT_DOUBLE_EQ(gemma3.arch.local_rope->theta, 10000.0);
  EXPECT_DOUBLE_EQ(gemma3.config.rope.theta, 1000000.0);
  EXPECT_EQ(gemma3.config.rope.scaling, RopeScaling::Linear);
}

TEST(LoaderErrors, UnsupportedLayerType) {
  test::ScratchDir dir;
  test::copy_dir(test::fixture("gemma2"), dir.path().string());
  edit_config(dir, [](json& j) { j["layer_types"] = {"sliding_attention", "chunked_attention", "full_attention"}; });
  EXPECT_NE(load_error(dir.path().string()).find("layer_types[1] = 'chunked_attention' is not supported"),
            std::string::npos)
      << load_error(dir.path().string());
}

TEST(LoaderErrors, UnsupportedFamilyOption) {
  test::ScratchDir dir;
  test::copy_dir(test::fixture("gemma2"), dir.path().string());
  edit_config(dir, [](json& j) { j["use_bidirectional_attention"] = true; });
  EXPECT_NE(load_error(dir.path().string()).find("use_bidirectional_attention=true is not supported for gemma2"),
            std::string::npos)
      << load_error(dir.path().string());
}

TEST(LoaderErrors, LongRopeFactorCount) {
  test::ScratchDir dir;
  test::copy_dir(test::fixture("phi3"), dir.path().string());
  edit_config(dir, [](json& j) { j["rope_parameters"]["long_factor"] = {1.0, 2.0}; });
  Model m = load_model(dir.path().string(), {.prefetch = false});
  Transformer transformer(m);
  SequenceCache cache = transformer.new_cache(40);
  std::vector<int32_t> ids(40, 5);
  try {
    transformer.forward(ids, cache, LogitsFor::LastToken);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("longrope: 2 factors given for 4 rotary frequencies"), std::string::npos)
        << e.what();
  }
}

TEST(LoaderErrors, WrongShapeNamesTensorShapesAndConfig) {
  test::ScratchDir dir;
  write_variant(dir, [](auto& tensors) {
    for (auto& t : tensors) {
      if (t.name == "model.layers.1.self_attn.k_proj.weight") {
        t.shape = {32, 64};
        t.bytes.resize(32 * 64 * 4);
      }
    }
  });
  EXPECT_NE(load_error(dir.path().string())
                .find("model.layers.1.self_attn.k_proj.weight: shape [32, 64], expected [16, 64] "
                      "(num_key_value_heads=2, head_dim=8, hidden_size=64)"),
            std::string::npos)
      << load_error(dir.path().string());
}

TEST(LoaderErrors, MissingTensor) {
  test::ScratchDir dir;
  write_variant(dir,
                [](auto& tensors) { std::erase_if(tensors, [](auto& t) { return t.name == "model.norm.weight"; }); });
  EXPECT_NE(load_error(dir.path().string()).find("model.norm.weight: missing from the checkpoint"), std::string::npos)
      << load_error(dir.path().string());
}

TEST(LoaderErrors, UnexpectedTensor) {
  test::ScratchDir dir;
  write_variant(dir, [](auto& tensors) {
    auto extra = tensors[0];
    extra.name = "model.layers.2.mlp.up_proj.weight";  // a third layer in a 2-layer config
    tensors.push_back(extra);
  });
  EXPECT_NE(load_error(dir.path().string()).find("model.layers.2.mlp.up_proj.weight: unexpected tensor"),
            std::string::npos)
      << load_error(dir.path().string());
}

TEST(LoaderErrors, IntegerWeights) {
  test::ScratchDir dir;
  write_variant(dir, [](auto& tensors) {
    for (auto& t : tensors) {
      if (t.name == "model.norm.weight") {
        t.dtype = DType::I64;
        t.bytes.resize(64 * 8);
      }
    }
  });
  EXPECT_NE(load_error(dir.path().string()).find("model.norm.weight: dtype I64"), std::string::npos);
}

TEST(LoaderErrors, UnknownArchitecture) {
  test::ScratchDir dir;
  write_variant(dir, [](auto&) {});
  edit_config(dir, [](json& j) { j["model_type"] = "mamba"; });
  EXPECT_NE(load_error(dir.path().string())
                .find("unsupported architecture: model_type 'mamba' (supported: llama, mistral, qwen2, qwen3, gemma2, "
                      "gemma3_text, olmoe, phi3, gpt2)"),
            std::string::npos)
      << load_error(dir.path().string());
}

TEST(LoaderErrors, UnsupportedOption) {
  test::ScratchDir dir;
  write_variant(dir, [](auto&) {});
  edit_config(dir, [](json& j) { j["hidden_act"] = "gelu"; });
  EXPECT_NE(load_error(dir.path().string()).find("hidden_act 'gelu' is not supported"), std::string::npos);
}

TEST(LoaderErrors, MalformedConfig) {
  test::ScratchDir dir;
  write_variant(dir, [](auto&) {});
  test::write_file(dir.file("config.json"), "[1, 2");
  EXPECT_NE(load_error(dir.path().string()).find("config.json: not valid JSON"), std::string::npos)
      << load_error(dir.path().string());
}

TEST(LoaderErrors, TruncatedWeights) {
  test::ScratchDir dir;
  write_variant(dir, [](auto&) {});
  std::string bytes = test::read_file(dir.file("model.safetensors"));
  test::write_file(dir.file("model.safetensors"), bytes.substr(0, bytes.size() / 2));
  EXPECT_NE(load_error(dir.path().string()).find("outside the data section"), std::string::npos)
      << load_error(dir.path().string());
}

TEST(LoaderErrors, NotADirectory) {
  EXPECT_NE(load_error("/nonexistent/model").find("not a model directory"), std::string::npos);
}

}  // namespace
}  // namespace nanoserve
