// Loads a model into a Model: config, family description, and weights bound by canonical name and
// checked against the shapes the config implies. Two sources: a Hugging Face model directory, or a
// GGUF file (model/gguf_loader.cpp maps its metadata onto the same description).
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <string>

#include "backend/backend.h"
#include "formats/gguf.h"
#include "formats/hf_checkpoint.h"
#include "model/arch.h"
#include "model/config.h"
#include "model/pooling.h"
#include "model/weights.h"

namespace nanoserve {

struct Model {
  ModelConfig config;
  ArchSpec arch;
  Weights weights;
  WeightNames names;                          // what the weights are called in the file(s)
  std::map<std::string, TensorView> tensors;  // every tensor on disk, by its name there
  std::unique_ptr<HfCheckpoint> checkpoint;   // owns the mapped files the weights point into...
  std::unique_ptr<GgufFile> gguf;             // ...or this, for a GGUF file
  std::vector<std::string> ignored_tensors;   // on disk but not weights (rotary buffers, GGUF RoPE factors)
  std::optional<Pooling> pooling;             // an embedding model's (sentence-transformers modules.json)
};

struct LoadOptions {
  bool prefetch = true;  // read every weight page now (with a progress bar on a terminal)
};

// path: a directory holding config.json, optional generation_config.json and the safetensors
// files, or a .gguf file. Throws Error naming the file, tensor or field at fault.
Model load_model(const std::string& path, const LoadOptions& options = {});

// make_backend and make_cpu_backend (backend/) for the model's weights (weight_set).
std::unique_ptr<Backend> make_backend(const std::string& device, const Model& model,
                                      const BackendOptions& options = {});
std::unique_ptr<Backend> make_cpu_backend(const Model& model);

// The GGUF half of load_model (model/gguf_loader.cpp).
Model load_gguf_model(const std::string& path, const LoadOptions& options);
// A model whose weights point into `contents` (the caller keeps it alive); source names it in errors.
Model model_from_gguf(const GgufContents& contents, const std::string& source);

// Every layer holds at least one tensor: a larger count is a corrupt config, refused before
// anything is sized by it.
void check_layer_count(const ModelConfig& config, const std::map<std::string, TensorView>& tensors,
                       const std::string& source);

// Binds model.weights from model.tensors by model.names (config and arch already set) and fails on
// tensors that are neither weights nor `ignorable`.
void bind_weights(Model& model, const std::vector<std::string>& ignorable_suffixes, const std::string& optional_prefix);
// Reads every weight's pages now (a progress bar on a terminal).
void prefetch_weights(const Model& model);

}  // namespace nanoserve
