#include "backend/cpu/kernel_level.h"
#include "util/log.h"

#include <fmt/format.h>

#include <cstdlib>
#include <string>

namespace nanoserve::cpu {

KernelLevel kernel_level() {
  static const KernelLevel level = [] {
    __builtin_cpu_init();
    // The features of x86-64-v4 and v3 that both GCC and clang can ask about (every CPU with them
    // has the rest of each level).
    const bool avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                        __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl") &&
                        __builtin_cpu_supports("avx512cd");
    const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("bmi2");
    const char* asked = std::getenv("NANOSERVE_CPU_KERNELS");
    const std::string want = asked ? asked : "";
    if (want == "avx512" && avx512) return KernelLevel::Avx512;
    if (want == "avx2" && avx2) return KernelLevel::Avx2;
    if (want == "baseline") return KernelLevel::Baseline;
    if (!want.empty()) {
      log::warning("NANOSERVE_CPU_KERNELS={} is not avx512, avx2 or baseline that this CPU runs; using the widest",
                   want);
    }
    return avx512 ? KernelLevel::Avx512 : avx2 ? KernelLevel::Avx2 : KernelLevel::Baseline;
  }();
  return level;
}

bool reduced_precision_products() {
  static const bool allowed = [] {
    const char* f32 = std::getenv("NANOSERVE_CPU_F32");
    return !f32 || std::string(f32) != "1";
  }();
  return allowed;
}

}  // namespace nanoserve::cpu
