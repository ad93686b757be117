// The sampling flags shared by the commands that generate (generate, chat, bench).
#pragma once

#include <CLI/CLI.hpp>

#include <optional>

#include "engine/engine.h"
#include "engine/request.h"
#include "model/loader.h"

namespace nanoserve::cli {

void add_sampling_options(CLI::App& command, SamplingParams& params);
// The sampling flags' values, checked before the model loads (the ones that need its vocabulary
// wait for it): throws Error naming the first bad one.
void check_sampling(const SamplingParams& params);
// How big the KV block pool is, and how it stores keys and values.
struct KvPoolOptions {
  double kv_cache_gib = 0;              // --kv-cache-memory; 0: 0.25 GiB on the CPU, the utilization's share on a GPU
  double gpu_memory_utilization = 0.9;  // the fraction of GPU memory weights, activations and KV may fill
  std::optional<KvDType> kv_dtype;      // --kv-cache-dtype; unset: default_kv_dtype
};

void add_engine_options(CLI::App& command, EngineOptions& options, KvPoolOptions& pool);
// --kv-cache-dtype f32|bf16|q8_0.
void add_kv_dtype_option(CLI::App& command, std::optional<KvDType>& dtype);
// The KV cache dtype without --kv-cache-dtype: bf16 on a GPU for a model whose products run in half
// precision (any weights but float32), as vLLM's default; f32 otherwise (the CPU's float32 reference,
// and the GPU's for float32 models).
KvDType default_kv_dtype(const Backend& backend, const Model& model);

// The options with the KV pool sized (each rank's) and the ranks set; prints the block count to stderr.
EngineOptions engine_options(const EngineOptions& options, const KvPoolOptions& pool, const ModelConfig& config,
                             const TensorParallel& ranks);

}  // namespace nanoserve::cli
