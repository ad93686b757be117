// Which instruction-set level the CPU kernels run at: the widest this CPU has, or a narrower one
// that NANOSERVE_CPU_KERNELS=avx512|avx2|baseline asks for (the tests run the fixtures on each).
#pragma once

namespace nanoserve::cpu {

enum class KernelLevel { Baseline, Avx2, Avx512 };

// Decided once per process. A value the CPU cannot run, or no level at all, warns on stderr and
// takes the widest (it may first be asked for inside a worker thread, where an exception would end
// the process).
KernelLevel kernel_level();

}  // namespace nanoserve::cpu
