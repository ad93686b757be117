#include "model/loader.h"

#include <gtest/gtest.h>

#include <cstring>
#include <functional>
#include <nlohmann/json.hpp>

#include "formats/safetensors.h"
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
  const TensorView& k1 = m.weights.layers[1].k;
  const TensorView& disk = file.tensors().at("model.layers.1.self_attn.k_proj.weight");
  ASSERT_EQ(k1.nbytes, disk.nbytes);
  EXPECT_EQ(std::memcmp(k1.data, disk.data, disk.nbytes), 0);
  EXPECT_EQ(k1.name, "layers.1.attn.k");
  EXPECT_EQ(k1.shape, (Shape{16, 64}));  // kv_heads 2 x head_dim 8 (GQA 4:1)
  EXPECT_NE(m.weights.lm_head.data, m.weights.embed.data) << "tinyllama has a separate LM head";
}

TEST(Loader, TiedHeadIsAnAliasOfTheEmbedding) {
  for (const char* dir : {"llama32"}) {
    Model m = load_model(test::fixture(dir));
    EXPECT_TRUE(m.config.tied_embeddings);
    EXPECT_EQ(m.weights.lm_head.data, m.weights.embed.data) << "same storage, not a copy";
    EXPECT_EQ(m.weights.lm_head.shape, m.weights.embed.shape);
  }
  Model demo = load_model(test::demo_model_dir());
  EXPECT_EQ(demo.weights.lm_head.data, demo.weights.embed.data);
}

TEST(Loader, ShardedCheckpoint) {
  Model m = load_model(test::fixture("sharded"));
  EXPECT_EQ(m.weights.layers.size(), 3u);
  EXPECT_EQ(m.weights.layers[2].down.dtype, DType::F16);
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
  write_variant(dir, [](auto& tensors) { std::erase_if(tensors, [](auto& t) { return t.name == "model.norm.weight"; }); });
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
  EXPECT_NE(load_error(dir.path().string()).find("model.layers.2.mlp.up_proj.weight: unexpected tensor"), std::string::npos)
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
  EXPECT_NE(load_error(dir.path().string()).find("unsupported architecture: model_type 'mamba' (supported: llama"),
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
