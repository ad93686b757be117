// A safetensors image: header validation, offsets, sizes.
#include <cstdint>

#include "formats/safetensors.h"
#include "util/error.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    auto contents = nanoserve::parse_safetensors(data, size);
    for (const auto& [name, t] : contents.tensors) {
      volatile uint8_t sink = t.nbytes ? t.data[t.nbytes - 1] : 0;  // every view must lie inside the input
      (void)sink;
    }
  } catch (const nanoserve::Error&) {}
  return 0;
}
