// The forward-pass benchmark behind `nanoserve bench --pp N --tg M` (llama-bench's measures).
#pragma once

#include <cstdint>
#include <optional>

#include "cli/common.h"
#include "backend/kv_cache.h"

namespace nanoserve::cli {

struct ForwardBenchOptions {
  ModelOptions model;
  int prompt_tokens = 0, gen_tokens = 0;  // pp and tg; 0 skips
  int repetitions = 5;
  uint64_t seed = 0;
  std::optional<KvDType> kv_dtype;  // unset: default_kv_dtype
};

void run_forward_bench(const ForwardBenchOptions& options);

}  // namespace nanoserve::cli
