// GGUF (v2, v3): a header, typed metadata key/values, tensor descriptions, then aligned tensor
// data. Parse and validate only; no model knowledge. Every count, length, dimension and offset is
// checked against the bytes that are actually there before anything is sized by it.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "formats/ggml_type.h"
#include "util/mapped_file.h"

namespace nanoserve {

// A metadata value: a scalar, a string or an array of values (arrays may nest).
struct GgufValue {
  enum class Kind { UInt, Int, Float, Bool, String, Array };
  Kind kind = Kind::UInt;
  uint32_t type = 0;  // the GGUF value type id as stored (UINT8 = 0 ... FLOAT64 = 12)
  uint64_t uint_value = 0;
  int64_t int_value = 0;
  double float_value = 0;
  bool bool_value = false;
  std::string_view string;  // points into the file
  std::vector<GgufValue> array;
  uint32_t element_type = 0;  // arrays: the elements' type id

  std::string type_name() const;                         // "uint32", "string", "array[string]", ...
  std::string to_string(size_t max_elements = 8) const;  // for `inspect`
};

struct GgufTensor {
  std::string name;
  GgmlType type;
  std::vector<uint64_t> dims;  // ggml order: dims[0] is the contiguous (row) dimension
  uint64_t offset = 0;         // from the start of the data section
  uint64_t bytes = 0;
  const uint8_t* data = nullptr;
  uint64_t elements() const;
};

struct GgufContents {
  uint32_t version = 0;
  uint64_t alignment = 32;
  uint64_t data_offset = 0;                                 // where the data section starts in the file
  std::vector<std::pair<std::string, GgufValue>> metadata;  // in file order
  std::vector<GgufTensor> tensors;                          // in file order

  const GgufValue* find(std::string_view key) const;
  const GgufTensor* tensor(std::string_view name) const;
};

// Parses a whole GGUF image in memory; throws Error naming the problem and where it is.
GgufContents parse_gguf(const uint8_t* data, uint64_t size);

class GgufFile {
 public:
  explicit GgufFile(const std::string& path);  // maps and validates; errors name the file
  const GgufContents& contents() const { return contents_; }
  const MappedFile& file() const { return *file_; }

 private:
  std::unique_ptr<MappedFile> file_;
  GgufContents contents_;
};

bool is_gguf_path(const std::string& path);  // a file whose first bytes are the GGUF magic

}  // namespace nanoserve
