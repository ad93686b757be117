// The weight files of a Hugging Face model directory: model.safetensors, or the shards listed by
// model.safetensors.index.json. Presents one name -> TensorView map over all files.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "formats/safetensors.h"

namespace nanoserve {

class HfCheckpoint {
 public:
  explicit HfCheckpoint(const std::string& directory);  // throws Error naming the file at fault

  const std::map<std::string, TensorView>& tensors() const { return tensors_; }
  const std::vector<std::unique_ptr<SafetensorsFile>>& files() const { return files_; }

 private:
  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  std::map<std::string, TensorView> tensors_;
};

}  // namespace nanoserve
