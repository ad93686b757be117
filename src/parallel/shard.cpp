#include "parallel/shard.h"

#include <fmt/format.h>

#include "util/error.h"

namespace nanoserve {

namespace {

// Column-parallel: this rank's share of the output features, with its share of
// the bias.
// The split keeps the weight's handle: each rank's backend is made from its own shard.
Linear split_outputs(const Linear& l, int rank, int ranks) {
  const int64_t size = l.out_features() / ranks, begin = rank * size;
  Linear split = l;
  split.weight = l.in_out ? columns_of(l.weight, begin, size) : rows_of(l.weight, begin, size);
  split.bias = elements_of(l.bias, begin, size);
  return split;
}

// Row-parallel: this rank's share of the input features. The partial products
// are summed across ranks, so only rank 0 adds the bias.
Linear split_inputs(const Linear& l, int rank, int ranks) {
  const int64_t size = l.in_features() / ranks, begin = rank * size;
  Linear split = l;
  split.weight = l.in_out ? rows_of(l.weight, begin, size) : columns_of(l.weight, begin, size);
  if (rank != 0) split.bias = {};
  return split;
}

void check_divides(int64_t value, const char* field, int ranks, const char* why) {
  if (value % ranks != 0) {
    fail("--tensor-parallel-size {}: {}={} does not divide by {} ({})", ranks, field, value, ranks, why);
  }
}

// A row-parallel split starts each rank's columns at a quantized block
// boundary.
void check_blocks(const Linear& l, int ranks) {
  const int64_t block = dtype_block_elems(l.weight.dtype), share = l.in_features() / ranks;
  if (share % block != 0) {
    fail("--tensor-parallel-size {}: {} is {} with blocks of {} values; its {} input columns per rank would cut blocks",
         ranks, l.weight.name, dtype_name(l.weight.dtype), block, share);
  }
}

}  // namespace

bool splits_vocabulary(const ModelConfig& config, int ranks) { return config.vocab_size % ranks == 0; }

void check_splits(const Model& model, int ranks) {
  const ModelConfig& c = model.config;
  if (ranks < 1) fail("--tensor-parallel-size {}: expected at least 1", ranks);
  if (ranks == 1) return;
  if (model.arch.mlp == MlpKind::Moe) {
    fail("--tensor-parallel-size {}: the {} family (mixture of experts) is not split across ranks yet", ranks,
         model.arch.family);
  }
  if (model.arch.qk_norm == QkNorm::Full) {
    fail(
        "--tensor-parallel-size {}: the {} family normalizes q and k across all heads, which ranks holding some "
        "heads cannot do alone",
        ranks, model.arch.family);
  }
  check_divides(c.heads, "num_attention_heads", ranks, "each rank holds whole attention heads");
  check_divides(c.kv_heads, "num_key_value_heads", ranks, "each rank holds whole KV heads");
  check_divides(c.intermediate_size, "intermediate_size", ranks, "each rank holds a slice of the MLP");
  for (const LayerWeights& l : model.weights.layers) {
    check_blocks(l.o, ranks);
    check_blocks(l.down, ranks);
  }
}

Model shard_model(const Model& model, int rank, int ranks) {
  Model shard;
  shard.config = model.config;
  shard.arch = model.arch;
  shard.names = model.names;
  ModelConfig& c = shard.config;
  c.heads /= ranks;
  c.kv_heads /= ranks;
  c.intermediate_size /= ranks;
  const Weights& w = model.weights;
  Weights& s = shard.weights;
  s = w;
  if (ranks > 1 && splits_vocabulary(model.config, ranks)) {
    const int64_t rows = model.config.vocab_size / ranks;
    s.embed = rows_of(w.embed, rank * rows, rows);
    s.lm_head.weight = rows_of(w.lm_head.weight, rank * rows, rows);
  }
  for (LayerWeights& l : s.layers) {
    l.q = split_outputs(l.q, rank, ranks);
    l.k = split_outputs(l.k, rank, ranks);
    l.v = split_outputs(l.v, rank, ranks);
    l.o = split_inputs(l.o, rank, ranks);
    if (l.gate.weight.data) l.gate = split_outputs(l.gate, rank, ranks);
    l.up = split_outputs(l.up, rank, ranks);
    l.down = split_inputs(l.down, rank, ranks);
  }
  return shard;
}

}  // namespace nanoserve
