#include "formats/dtype.h"

#include "util/error.h"

namespace nanoserve {

namespace {
struct DTypeInfo {
  DType dtype;
  std::string_view name;
  int64_t block_elems, block_bytes;
  GgmlType ggml;
  bool safetensors;  // a dtype safetensors files use
};
// Indexed by DType. I64 has no ggml counterpart nanoserve reads; its ggml entry is never used.
constexpr DTypeInfo kDTypes[] = {
    {DType::F32, "F32", 1, 4, GgmlType::F32, true},         {DType::F16, "F16", 1, 2, GgmlType::F16, true},
    {DType::BF16, "BF16", 1, 2, GgmlType::BF16, true},      {DType::I64, "I64", 1, 8, GgmlType::I64, true},
    {DType::Q4_0, "Q4_0", 32, 18, GgmlType::Q4_0, false},   {DType::Q4_1, "Q4_1", 32, 20, GgmlType::Q4_1, false},
    {DType::Q5_0, "Q5_0", 32, 22, GgmlType::Q5_0, false},   {DType::Q5_1, "Q5_1", 32, 24, GgmlType::Q5_1, false},
    {DType::Q8_0, "Q8_0", 32, 34, GgmlType::Q8_0, false},   {DType::Q4_K, "Q4_K", 256, 144, GgmlType::Q4_K, false},
    {DType::Q5_K, "Q5_K", 256, 176, GgmlType::Q5_K, false}, {DType::Q6_K, "Q6_K", 256, 210, GgmlType::Q6_K, false},
};

const DTypeInfo& info(DType dtype) { return kDTypes[static_cast<int>(dtype)]; }
}  // namespace

size_t dtype_size(DType dtype) { return static_cast<size_t>(info(dtype).block_bytes); }

int64_t dtype_block_elems(DType dtype) { return info(dtype).block_elems; }

int64_t dtype_bytes(DType dtype, int64_t elements) {
  const DTypeInfo& i = info(dtype);
  if (elements % i.block_elems != 0) {
    fail("{} values of {} are not a whole number of its {}-value blocks", elements, i.name, i.block_elems);
  }
  return elements / i.block_elems * i.block_bytes;
}

bool is_quantized(DType dtype) { return info(dtype).block_elems > 1; }

std::string_view dtype_name(DType dtype) { return info(dtype).name; }

bool parse_dtype(std::string_view name, DType* out) {
  for (const auto& i : kDTypes) {
    if (i.safetensors && i.name == name) {
      *out = i.dtype;
      return true;
    }
  }
  return false;
}

bool dtype_from_ggml(GgmlType type, DType* out) {
  for (const auto& i : kDTypes) {
    if (i.dtype != DType::I64 && i.ggml == type) {
      *out = i.dtype;
      return true;
    }
  }
  return false;
}

GgmlType ggml_type_of(DType dtype) {
  if (dtype == DType::I64) fail("I64 tensors have no ggml weight type");
  return info(dtype).ggml;
}

}  // namespace nanoserve
