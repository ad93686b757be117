// A GGUF file from a stranger: header, metadata, tensor descriptions, the first row of each tensor
// dequantized (reads exactly the bytes the parser vouched for), then the file as a model (config
// from metadata, weights bound and shape-checked) and as a tokenizer.
#include <cstdint>
#include <vector>

#include "formats/gguf.h"
#include "formats/quant.h"
#include "model/loader.h"
#include "tokenizer/gguf_vocab.h"
#include "tokenizer/tokenizer.h"
#include "util/error.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  nanoserve::GgufContents c;
  try {
    c = nanoserve::parse_gguf(data, size);
    for (const auto& t : c.tensors) {
      const auto* info = nanoserve::ggml_type_info(static_cast<uint32_t>(t.type));
      if (!info->dequantizable || t.dims[0] > 4096) continue;
      std::vector<float> row(t.dims[0]);
      nanoserve::dequantize_row(t.type, t.data, row.data(), static_cast<int64_t>(row.size()));
    }
    for (const auto& [key, value] : c.metadata) (void)value.to_string();
  } catch (const nanoserve::Error&) {
    return 0;
  }
  try {
    (void)nanoserve::model_from_gguf(c, "fuzz.gguf");
  } catch (const nanoserve::Error&) {}
  try {
    const auto described = nanoserve::gguf_tokenizer_json(c, "fuzz.gguf");
    const auto tokenizer = nanoserve::Tokenizer::from_text(described.dump(), "fuzz.gguf");
    (void)tokenizer.decode(tokenizer.encode("Hello, world! 123"));
  } catch (const nanoserve::Error&) {}
  return 0;
}
