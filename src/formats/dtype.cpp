#include "formats/dtype.h"

namespace nanoserve {

namespace {
struct DTypeInfo {
  DType dtype;
  std::string_view name;
  size_t size;
};
constexpr DTypeInfo kDTypes[] = {
    {DType::F32, "F32", 4}, {DType::F16, "F16", 2}, {DType::BF16, "BF16", 2}, {DType::I64, "I64", 8}};
}  // namespace

size_t dtype_size(DType dtype) { return kDTypes[static_cast<int>(dtype)].size; }

std::string_view dtype_name(DType dtype) { return kDTypes[static_cast<int>(dtype)].name; }

bool parse_dtype(std::string_view name, DType* out) {
  for (const auto& info : kDTypes) {
    if (info.name == name) {
      *out = info.dtype;
      return true;
    }
  }
  return false;
}

}  // namespace nanoserve
