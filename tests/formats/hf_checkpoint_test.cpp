#include "formats/hf_checkpoint.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "test_support.h"
#include "util/error.h"

namespace nanoserve {
namespace {

TEST(HfCheckpoint, ShardedCheckpointPresentsAllTensors) {
  HfCheckpoint ckpt(test::fixture("sharded"));
  EXPECT_EQ(ckpt.files().size(), 7u);
  auto index = nlohmann::json::parse(test::read_file(test::fixture("sharded/model.safetensors.index.json")));
  EXPECT_EQ(ckpt.tensors().size(), index["weight_map"].size());
  for (const auto& [name, shard] : index["weight_map"].items()) EXPECT_TRUE(ckpt.tensors().count(name)) << name;
}

TEST(HfCheckpoint, IndexListingAMissingTensorIsAnError) {
  test::ScratchDir dir;
  test::copy_dir(test::fixture("sharded"), dir.path().string());
  auto index = nlohmann::json::parse(test::read_file(dir.file("model.safetensors.index.json")));
  index["weight_map"]["model.layers.9.mlp.up_proj.weight"] = "model-00001-of-00007.safetensors";
  test::write_file(dir.file("model.safetensors.index.json"), index.dump());
  try {
    HfCheckpoint ckpt(dir.path().string());
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("model.layers.9.mlp.up_proj.weight"), std::string::npos) << e.what();
  }
}

TEST(HfCheckpoint, ShardNameEscapingTheDirectoryIsRejected) {
  test::ScratchDir dir;
  test::copy_dir(test::fixture("sharded"), dir.path().string());
  auto index = nlohmann::json::parse(test::read_file(dir.file("model.safetensors.index.json")));
  index["weight_map"]["lm_head.weight"] = "../elsewhere.safetensors";
  test::write_file(dir.file("model.safetensors.index.json"), index.dump());
  EXPECT_THROW(HfCheckpoint(dir.path().string()), Error);
}

TEST(HfCheckpoint, DirectoryWithoutWeights) {
  test::ScratchDir dir;
  try {
    HfCheckpoint ckpt(dir.path().string());
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("no model.safetensors"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace nanoserve
