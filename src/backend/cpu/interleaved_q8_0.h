// Q8_0 weights laid out again for the CPU's VNNI products, 16 rows side by side. In the file a
// row's 34-byte blocks keep each float16 scale beside its 32 values, so a product step handles
// one block of one row, loads and converts its scale alone, and each output ends in a horizontal
// sum: on the 1B-shaped Q8_0 file this layout took decode at one thread from 13.9 to 17.6 tok/s
// and prompt processing at two from 99 to 173.
//
// Here, for each group of 16 rows and each pair of blocks (64 values), 1088 bytes: the first
// block's values as 8 words of 64 bytes, word j holding 4 values of each row (lane r: row r's
// values 4j..4j+3, stored as q + 128 for vpdpbusd's unsigned operand), the second block's the
// same, then the 16 rows' float16 scales of each block. One vpdpbusd advances 16 rows by 4 values
// against one broadcast of 4 activations, each row's sum stays in its own lane (no horizontal
// adds), and one conversion gives 16 scales.
#pragma once

#include <cstdint>
#include <memory>

#include "formats/tensor_view.h"

namespace nanoserve::cpu {

class InterleavedQ8_0 {
 public:
  // w: [n, k] Q8_0 (any row stride), k a multiple of 32.
  explicit InterleavedQ8_0(const TensorView& w);

  // out[rows, n] = x[rows, k] * w^T with the activations quantized to Q8_0 blocks as
  // multiply_reduced does (the same integer sums and scales, added up in another order). Each
  // output is computed the same way whatever the other rows are.
  void multiply(const float* x, int64_t rows, float* out) const;

  int64_t rows() const { return n_; }
  int64_t columns() const { return k_; }
  size_t bytes() const { return bytes_; }

 private:
  struct Free {
    void operator()(uint8_t* p) const;
  };
  int64_t n_ = 0, k_ = 0, pairs_ = 0;  // pairs_: pairs of blocks per row, the last one padded
  size_t bytes_ = 0;
  std::unique_ptr<uint8_t[], Free> data_;  // [groups of 16 rows][pairs_][1088 bytes]
};

}  // namespace nanoserve::cpu
