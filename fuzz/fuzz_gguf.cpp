// A GGUF file from a stranger: header, metadata, tensor descriptions, and the first row of each
// tensor dequantized (reads exactly the bytes the parser vouched for).
#include <cstdint>
#include <vector>

#include "formats/gguf.h"
#include "formats/quant.h"
#include "util/error.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const nanoserve::GgufContents c = nanoserve::parse_gguf(data, size);
    for (const auto& t : c.tensors) {
      const auto* info = nanoserve::ggml_type_info(static_cast<uint32_t>(t.type));
      if (!info->dequantizable || t.dims[0] > 4096) continue;
      std::vector<float> row(t.dims[0]);
      nanoserve::dequantize_row(t.type, t.data, row.data(), static_cast<int64_t>(row.size()));
    }
    for (const auto& [key, value] : c.metadata) (void)value.to_string();
  } catch (const nanoserve::Error&) {
  }
  return 0;
}
