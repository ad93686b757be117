// Rotary position embeddings: the per-pair inverse frequencies for each scaling kind (applying them
// is the backends' part, backend/rope_table.h). Frequencies are computed in float32 the way Hugging
// Face computes them, so positions far into the context rotate by the same angles.
#pragma once

#include <vector>

#include "backend/rope_table.h"
#include "model/config.h"

namespace nanoserve {

// seq_len: the length the sequence reaches in this forward pass (dynamic and longrope depend on it).
RopeFrequencies rope_frequencies(const RopeConfig& rope, int64_t head_dim, int64_t max_positions, int64_t seq_len);

// True when rope_frequencies changes with seq_len.
bool rope_depends_on_length(const RopeConfig& rope);

}  // namespace nanoserve
