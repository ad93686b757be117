// BF16 weights against activations rounded to bf16: vdpbf16ps multiplies 32 bf16 pairs a step and
// adds each pair's two products into a float lane, so a step does twice the work of a float FMA
// and reads the weights as they are stored. A row's tail past a multiple of 32 is read masked (the
// activations are zero-padded there).
#include <cstring>

#include "backend/cpu/avx512.h"
#include "backend/cpu/reduced_tiles.h"
#include "formats/dtype.h"

namespace nanoserve::cpu::tiles {

namespace {

struct Bf16Tile {
  // Block b of R weight rows against C activation rows; `mask` selects the values of a row's tail.
  template <int R, int C, bool kTail>
  [[gnu::always_inline]] NANOSERVE_BF16 static inline void step(const uint8_t* const* w, const Bf16Block* const* x,
                                                                int64_t b, __mmask32 mask, __m512 (&acc)[R][C]) {
    __m512bh xs[C];
    for (int c = 0; c < C; ++c) xs[c] = reinterpret_cast<__m512bh>(_mm512_load_si512(x[c][b].v));
    for (int r = 0; r < R; ++r) {
      const uint8_t* at = w[r] + 64 * b;
      if constexpr (C == 1) prefetch_ahead<64>(at);  // decode; in prefill the rows are reused from cache
      const __m512i weights = kTail ? _mm512_maskz_loadu_epi16(mask, at) : _mm512_loadu_si512(at);
      for (int c = 0; c < C; ++c) acc[r][c] = _mm512_dpbf16_ps(acc[r][c], reinterpret_cast<__m512bh>(weights), xs[c]);
    }
  }

  template <int R, int C>
  NANOSERVE_BF16 static void run(const uint8_t* const* w, const Bf16Block* const* x, int64_t blocks, int64_t k,
                                 float* out, int64_t n) {
    __m512 acc[R][C];
    zero_sums(acc);
    // Full blocks, then the masked tail. (GCC keeps the sums in registers only in a loop free of
    // masked loads and, with more than one activation row, of prefetches: either makes it store
    // all 16 of a 4x4 tile every step, at half the speed.)
    const int64_t tail = k % 32, full = tail ? blocks - 1 : blocks;
    for (int64_t b = 0; b < full; ++b) step<R, C, false>(w, x, b, 0, acc);
    if (tail) step<R, C, true>(w, x, full, (__mmask32{1} << tail) - 1, acc);
    store_sums(acc, out, n);
  }
};

// Round to nearest even, as float_to_bf16 does (NaN kept NaN by vcvtne2ps2bf16 too).
NANOSERVE_BF16 void round_row(const float* x, int64_t k, Bf16Block* out) {
  int64_t i = 0;
  for (; i + 32 <= k; i += 32) {
    const __m512bh pair = _mm512_cvtne2ps_pbh(_mm512_loadu_ps(x + i + 16), _mm512_loadu_ps(x + i));
    _mm512_store_si512(out[i / 32].v, reinterpret_cast<__m512i>(pair));
  }
  if (i < k) {
    Bf16Block& last = out[i / 32];
    last = Bf16Block{};
    for (int64_t j = i; j < k; ++j) last.v[j - i] = float_to_bf16(x[j]);
  }
}

}  // namespace

void round_to_bf16(const float* x, int64_t k, Bf16Block* out) { round_row(x, k, out); }

const RowsKernel bf16_rows = &each_column_group<Bf16Tile, Bf16Block>;

}  // namespace nanoserve::cpu::tiles
