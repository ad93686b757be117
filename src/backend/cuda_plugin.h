// The CUDA backend lives in a plugin, libnanoserve_cuda.so, loaded the first time a GPU is asked
// for: a run on the CPU never maps the CUDA libraries (cuBLAS, cuBLASLt and NCCL are about 1 GB of
// shared objects, 0.5 s to load cold and 200 MB of address space touched).
#pragma once

namespace nanoserve {

// The plugin's entry point `name` (an extern "C" function). Loads the plugin on first use: from
// $NANOSERVE_CUDA_PLUGIN if set, else beside the executable, else on the library path. Throws
// Error saying what failed to load (the plugin itself, or a CUDA library it needs).
void* cuda_plugin_symbol(const char* name);

}  // namespace nanoserve
