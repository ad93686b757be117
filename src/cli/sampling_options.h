// The sampling flags shared by the commands that generate (generate, chat, bench).
#pragma once

#include <CLI/CLI.hpp>

#include "engine/engine.h"
#include "engine/request.h"

namespace nanoserve::cli {

void add_sampling_options(CLI::App& command, SamplingParams& params);
void add_engine_options(CLI::App& command, EngineOptions& options, double& kv_cache_gib);
// --kv-cache-dtype f32|q8_0.
void add_kv_dtype_option(CLI::App& command, KvDType& dtype);

// The options with --kv-cache-memory applied; prints the block count to stderr.
EngineOptions engine_options(const EngineOptions& options, double kv_cache_gib, const ModelConfig& config);

}  // namespace nanoserve::cli
