#include "formats/tensor_view.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

namespace nanoserve {

int64_t TensorView::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

std::string shape_str(const Shape& shape) { return fmt::format("[{}]", fmt::join(shape, ", ")); }

// nbytes: from the first element to the last one the view reaches.
TensorView rows_of(const TensorView& t, int64_t begin, int64_t count) {
  TensorView v = t;
  v.shape[0] = count;
  v.data += dtype_bytes(t.dtype, begin * t.stride());
  v.nbytes = static_cast<size_t>(dtype_bytes(t.dtype, (count - 1) * t.stride() + t.shape[1]));
  return v;
}

TensorView columns_of(const TensorView& t, int64_t begin, int64_t count) {
  TensorView v = t;
  v.shape[1] = count;
  v.row_stride = t.stride();
  v.data += dtype_bytes(t.dtype, begin);
  v.nbytes = static_cast<size_t>(dtype_bytes(t.dtype, (t.shape[0] - 1) * t.stride() + count));
  return v;
}

TensorView elements_of(const TensorView& t, int64_t begin, int64_t count) {
  if (!t.data) return t;
  TensorView v = t;
  v.shape = {count};
  v.data += dtype_bytes(t.dtype, begin);
  v.nbytes = static_cast<size_t>(dtype_bytes(t.dtype, count));
  return v;
}

}  // namespace nanoserve
