// Which instruction-set level the CPU kernels run at: the widest this CPU has, or a narrower one
// that NANOSERVE_CPU_KERNELS=avx512|avx2|baseline asks for (the tests run the fixtures on each).
#pragma once

namespace nanoserve::cpu {

enum class KernelLevel { Baseline, Avx2, Avx512 };

// Decided once per process. A value the CPU cannot run, or no level at all, warns on stderr and
// takes the widest (it may first be asked for inside a worker thread, where an exception would end
// the process).
KernelLevel kernel_level();

// Whether products may round their activations to the weights' precision (bf16, or 8 bits for the
// GGUF types with integer kernels: reduced_dot.h): yes, unless NANOSERVE_CPU_F32=1 asks for the
// float32 reference path, which the fixture tests hold to Hugging Face's float32 results.
bool reduced_precision_products();

}  // namespace nanoserve::cpu
