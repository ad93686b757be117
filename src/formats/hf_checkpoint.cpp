#include "formats/hf_checkpoint.h"

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>

#include "util/error.h"
#include "util/json_parse.h"

namespace nanoserve {

namespace fs = std::filesystem;

namespace {

// weight_map of the index: tensor name -> shard file name.
std::map<std::string, std::string> read_weight_map(const fs::path& index_path) {
  const auto j = read_json_file(index_path.string());
  return with_context(index_path.string(), [&] {
    if (!j.contains("weight_map") || !j["weight_map"].is_object()) fail("missing object 'weight_map'");
    std::map<std::string, std::string> map;
    for (const auto& [name, file] : j["weight_map"].items()) {
      if (!file.is_string()) fail("weight_map['{}'] must be a file name", name);
      auto shard = file.get<std::string>();
      if (shard.empty() || shard.find('/') != std::string::npos || shard == "..") {
        fail("weight_map['{}'] = '{}' is not a file name in the model directory", name, shard);
      }
      map[name] = shard;
    }
    return map;
  });
}

}  // namespace

HfCheckpoint::HfCheckpoint(const std::string& directory) {
  const fs::path dir(directory);
  const fs::path single = dir / "model.safetensors", index = dir / "model.safetensors.index.json";
  if (fs::exists(index)) {
    auto weight_map = read_weight_map(index);
    std::set<std::string> shards;
    for (const auto& [_, shard] : weight_map) shards.insert(shard);
    for (const auto& shard : shards) files_.push_back(std::make_unique<SafetensorsFile>((dir / shard).string()));
    for (const auto& file : files_) {
      for (const auto& [name, view] : file->tensors()) {
        auto it = weight_map.find(name);
        if (it == weight_map.end() || dir / it->second != fs::path(file->file().path())) {
          fail("{}: tensor '{}' is not listed for this shard in {}", file->file().path(), name, index.string());
        }
        tensors_[name] = view;
      }
    }
    for (const auto& [name, shard] : weight_map) {
      if (!tensors_.count(name))
        fail("{}: lists '{}' in {}, but that shard has no such tensor", index.string(), name, shard);
    }
  } else if (fs::exists(single)) {
    files_.push_back(std::make_unique<SafetensorsFile>(single.string()));
    tensors_ = files_.back()->tensors();
  } else {
    fail("{}: no model.safetensors or model.safetensors.index.json", directory);
  }
}

}  // namespace nanoserve
