// A named, typed, shaped view of tensor bytes owned by someone else (usually a mapped file).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "formats/dtype.h"

namespace nanoserve {

using Shape = std::vector<int64_t>;

struct TensorView {
  std::string name;
  DType dtype = DType::F32;
  Shape shape;
  const uint8_t* data = nullptr;
  size_t nbytes = 0;
  int64_t row_stride = 0;  // elements from one row to the next; 0: rows are contiguous (shape.back())

  int64_t numel() const;
  int64_t stride() const { return row_stride ? row_stride : shape.back(); }
};

std::string shape_str(const Shape& shape);  // "[512, 2048]"

}  // namespace nanoserve
