// The grammar fuzzers' walk: up to `steps` tokens, always the lowest one the matcher allows, so
// that masks and transitions of a fuzzed grammar are exercised, not only its compilation.
#pragma once

#include <cstdint>

#include "grammar/matcher.h"

inline void walk_lowest_tokens(nanoserve::grammar::Matcher& m, int steps) {
  for (int step = 0; step < steps && !m.finished(); ++step) {
    const auto mask = m.allowed();
    const auto& bits = *mask;
    int32_t token = -1;
    for (size_t w = 0; w < bits.size() && token < 0; ++w) {
      if (bits[w]) token = static_cast<int32_t>(w * 64 + static_cast<size_t>(__builtin_ctzll(bits[w])));
    }
    if (token < 0 || !m.accept(token)) return;
  }
}
