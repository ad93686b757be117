// safetensors: an 8-byte little-endian header length, a JSON header mapping tensor names to
// {dtype, shape, data_offsets}, then the data section. Parse and validate only; no model knowledge.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "formats/tensor_view.h"
#include "util/mapped_file.h"

namespace nanoserve {

// Parses and validates a whole safetensors image in memory (header and data section); the views
// point into `data`. Throws Error naming the problem. SafetensorsFile uses it on a mapped file.
struct SafetensorsContents {
  std::map<std::string, TensorView> tensors;
  std::map<std::string, std::string> metadata;
};
SafetensorsContents parse_safetensors(const uint8_t* data, uint64_t size);

class SafetensorsFile {
 public:
  // Maps the file and validates the whole header; throws Error naming the file and the problem.
  explicit SafetensorsFile(const std::string& path);

  const std::map<std::string, TensorView>& tensors() const { return tensors_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  const MappedFile& file() const { return *file_; }

 private:
  std::unique_ptr<MappedFile> file_;
  std::map<std::string, TensorView> tensors_;
  std::map<std::string, std::string> metadata_;
};

// A tensor to write: the caller owns the bytes.
struct TensorToWrite {
  std::string name;
  DType dtype;
  Shape shape;
  const void* data;
};

// Writes a safetensors file (the `logits` command's output and test inputs).
void write_safetensors(const std::string& path, const std::vector<TensorToWrite>& tensors);

}  // namespace nanoserve
