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

// Views of part of a view, over the same bytes. A block-quantized view splits only at block
// boundaries, which the caller checks.
// Rows [begin, begin + count) of a 2-D view; they keep its row stride.
TensorView rows_of(const TensorView& t, int64_t begin, int64_t count);
// Columns [begin, begin + count) of a 2-D view; its rows keep the whole matrix's stride.
TensorView columns_of(const TensorView& t, int64_t begin, int64_t count);
// Elements [begin, begin + count) of a 1-D view; an absent view (no data) stays absent.
TensorView elements_of(const TensorView& t, int64_t begin, int64_t count);

}  // namespace nanoserve
