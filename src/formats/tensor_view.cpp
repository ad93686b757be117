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

}  // namespace nanoserve
