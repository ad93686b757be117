// How a model splits across tensor-parallel ranks (the Megatron-LM layout that
// vLLM and SGLang use): each rank holds whole attention heads and KV heads and
// a slice of the MLP's width; q, k, v, gate and up are split by output rows
// (column-parallel), o and down by input columns (row-parallel, summed across
// ranks after), and the embedding and LM head by vocabulary rows when the
// vocabulary divides evenly (else every rank holds them whole). A rank's
// weights are views into the loaded model's: nothing is copied on the host.
#pragma once

#include <cstdint>

#include "backend/collective.h"
#include "model/loader.h"

namespace nanoserve {

// Throws Error naming what does not split `ranks` ways: heads, KV heads or MLP
// width that do not divide, quantized blocks that a row-parallel split would
// cut, or a family not split yet.
void check_splits(const Model& model, int ranks);

// Whether the vocabulary splits evenly `ranks` ways.
bool splits_vocabulary(const ModelConfig& config, int ranks);

// Rank `rank` of `ranks`: its config (heads, kv_heads and intermediate_size
// divided; the vocabulary size stays whole, as token ids and logits are the
// model's) and its weights, as views into `model`'s, which must outlive it.
// check_splits first.
Model shard_model(const Model& model, int rank, int ranks);

}  // namespace nanoserve
