// Loads a Hugging Face model directory into a Model: config, family description, and weights
// bound by canonical name and checked against the shapes the config implies.
#pragma once

#include <memory>
#include <string>

#include "formats/hf_checkpoint.h"
#include "model/arch.h"
#include "model/config.h"
#include "model/weights.h"

namespace nanoserve {

struct Model {
  ModelConfig config;
  ArchSpec arch;
  Weights weights;
  std::unique_ptr<HfCheckpoint> checkpoint;  // owns the mapped files the weights point into
  std::vector<std::string> ignored_tensors;  // on disk but not weights (e.g. rotary buffers)
};

struct LoadOptions {
  bool prefetch = true;  // read every weight page now (with a progress bar on a terminal)
};

// directory holds config.json, optional generation_config.json and the safetensors files.
// Throws Error naming the file, tensor or field at fault.
Model load_model(const std::string& directory, const LoadOptions& options = {});

}  // namespace nanoserve
