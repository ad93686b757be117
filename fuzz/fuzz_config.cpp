// config.json as the loader reads it: ModelConfig, the family's normalization and description,
// the weight list it implies and the RoPE tables.
#include <cstdint>
#include <string_view>
#include <nlohmann/json.hpp>

#include "model/arch.h"
#include "model/config.h"
#include "model/rope.h"
#include "model/weights.h"
#include "util/error.h"
#include "util/json_parse.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    auto j = nanoserve::parse_json(std::string_view(reinterpret_cast<const char*>(data), size), "config.json");
    if (!j.is_object() || !j.contains("model_type") || !j["model_type"].is_string()) return 0;
    const nanoserve::ArchFamily& family = nanoserve::find_family(j["model_type"].get<std::string>());
    if (family.normalize_config) family.normalize_config(j);
    nanoserve::ModelConfig config = nanoserve::parse_model_config(j, "config.json");
    // Keep the listing cheap: a hostile config may ask for billions of layers or experts.
    if (config.layers > 64 || config.vocab_size > (1 << 20)) return 0;
    nanoserve::ArchSpec spec = family.describe(j, config, "config.json");
    if (spec.moe.experts > 256) return 0;
    nanoserve::Weights weights;
    nanoserve::weight_slots(weights, config, spec, *family.names);
    if (config.head_dim <= 4096) nanoserve::rope_frequencies(config.rope, config.head_dim, config.max_positions, 4096);
  } catch (const nanoserve::Error&) {}
  return 0;
}
