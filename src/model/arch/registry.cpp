#include <fmt/format.h>
#include <fmt/ranges.h>

#include "model/arch/common.h"
#include "util/error.h"

namespace nanoserve {

namespace {
// The explicit list of families (no self-registration: it can vanish when linking statically).
const ArchFamily* const kFamilies[] = {&arch::llama(), &arch::mistral(), &arch::qwen2(),
                                       &arch::qwen3(), &arch::gemma2(),  &arch::gemma3(),
                                       &arch::olmoe(), &arch::phi3(),    &arch::gpt2()};
}  // namespace

std::vector<std::string_view> supported_model_types() {
  std::vector<std::string_view> types;
  for (const auto* f : kFamilies) types.push_back(f->model_type);
  return types;
}

const ArchFamily& find_family(const std::string& model_type) {
  for (const auto* f : kFamilies) {
    if (f->model_type == model_type) return *f;
  }
  fail("unsupported architecture: model_type '{}' (supported: {})", model_type,
       fmt::join(supported_model_types(), ", "));
}

}  // namespace nanoserve
