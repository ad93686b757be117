#include "util/error.h"

namespace nanoserve {

uint64_t checked_mul(uint64_t a, uint64_t b, const char* what) {
  uint64_t result;
  if (__builtin_mul_overflow(a, b, &result)) fail("{}: size overflows 64 bits ({} x {})", what, a, b);
  return result;
}

uint64_t checked_add(uint64_t a, uint64_t b, const char* what) {
  uint64_t result;
  if (__builtin_add_overflow(a, b, &result)) fail("{}: size overflows 64 bits ({} + {})", what, a, b);
  return result;
}

}  // namespace nanoserve
