// Writes GGUF v3 files: typed metadata, then tensors at 32-byte-aligned offsets. Used by
// tools/make_random_model (benchmark models) and tests.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "formats/ggml_type.h"

namespace nanoserve {

class GgufWriter {
 public:
  void add_string(const std::string& key, const std::string& value);
  void add_u32(const std::string& key, uint32_t value);
  void add_f32(const std::string& key, float value);
  void add_bool(const std::string& key, bool value);
  void add_strings(const std::string& key, const std::vector<std::string>& values);
  void add_i32s(const std::string& key, const std::vector<int32_t>& values);
  void add_f32s(const std::string& key, const std::vector<float>& values);

  // shape is row-major ([rows, cols]); the file stores it reversed, as ggml does. data holds the
  // tensor's bytes in `type`'s layout and must outlive write().
  void add_tensor(const std::string& name, GgmlType type, const std::vector<int64_t>& shape, const void* data,
                  size_t bytes);

  // Throws Error naming the path when it cannot be written.
  void write(const std::string& path) const;

 private:
  void key(const std::string& name, uint32_t type);
  template <typename T>
  void raw(const T& value);
  void raw_string(const std::string& s);

  struct Tensor {
    std::string name;
    GgmlType type;
    std::vector<int64_t> shape;
    const void* data;
    size_t bytes;
  };
  std::string metadata_;
  uint64_t metadata_count_ = 0;
  std::vector<Tensor> tensors_;
};

}  // namespace nanoserve
