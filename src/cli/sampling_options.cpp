#include "cli/sampling_options.h"

#include "cli/checks.h"
#include "util/error.h"
#include "util/log.h"

#include <fmt/format.h>

#include <limits>

namespace nanoserve::cli {

void add_sampling_options(CLI::App& cmd, SamplingParams& p) {
  cmd.add_option("-n,--max-tokens,--n-predict", p.max_tokens, "tokens to generate at most (stops early at end of text)")
      ->capture_default_str()
      ->check(positive());
  cmd.add_option("--temperature", p.temperature, "0 for greedy decoding; higher is more random")
      ->capture_default_str()
      ->check(non_negative());
  cmd.add_option("--top-k", p.top_k, "sample among the k most likely tokens (0: off)")
      ->capture_default_str()
      ->check(non_negative());
  cmd.add_option("--top-p", p.top_p, "sample among the most likely tokens holding this probability (1: off)")
      ->capture_default_str();
  cmd.add_option("--min-p", p.min_p, "drop tokens less likely than min-p x the most likely one (0: off)")
      ->capture_default_str();
  cmd.add_option("--repetition-penalty", p.repetition_penalty, "> 1 discourages tokens seen in the prompt or output")
      ->capture_default_str();
  cmd.add_option("--presence-penalty", p.presence_penalty, "subtracted from tokens already generated (-2..2)")
      ->capture_default_str();
  cmd.add_option("--frequency-penalty", p.frequency_penalty, "subtracted per time a token was generated (-2..2)")
      ->capture_default_str();
  cmd.add_option("--seed", p.seed, "random seed (same seed, same text)");
  cmd.add_option("--stop", p.stop, "stop when the text contains this string (repeatable); it is not printed");
  cmd.add_flag("--ignore-eos", p.ignore_eos, "keep generating past the end-of-text token");
}

void check_sampling(const SamplingParams& params) { params.validate(std::numeric_limits<int32_t>::max()); }

void add_engine_options(CLI::App& cmd, EngineOptions& options, KvPoolOptions& pool) {
  cmd.add_option("--kv-cache-memory", pool.kv_cache_gib,
                 "GiB for the KV block pool (default: 0.25 on the CPU; on a GPU, what --gpu-memory-utilization leaves)")
      ->check(positive());
  cmd.add_option("--gpu-memory-utilization", pool.gpu_memory_utilization,
                 "fraction of the GPU's memory the weights, activations and KV cache may use (default 0.9)")
      ->check(between(0.05, 1.0));
  cmd.add_option("--max-model-len,--ctx-size,-c", options.max_model_len,
                 "the longest sequence, prompt and reply, below the model's context (default: the model's "
                 "max_position_embeddings)")
      ->check(positive());
  cmd.add_option("--max-num-seqs", options.limits.max_num_seqs, "sequences running at once")
      ->capture_default_str()
      ->check(positive());
  cmd.add_option("--max-batched-tokens", options.limits.max_batched_tokens,
                 "tokens per engine step (prefill chunk budget)")
      ->capture_default_str()
      ->check(positive());
  cmd.add_flag_callback(
      "--no-prefix-caching", [&options] { options.prefix_caching = false; },
      "do not reuse the KV blocks of earlier prompts");
  add_kv_dtype_option(cmd, pool.kv_dtype);
}

void add_kv_dtype_option(CLI::App& cmd, std::optional<KvDType>& dtype) {
  cmd.add_option_function<std::string>(
      "--kv-cache-dtype",
      [&dtype](const std::string& name) {
        KvDType parsed;
        if (!parse_kv_dtype(name, &parsed))
          throw CLI::ValidationError("--kv-cache-dtype", "expected f32, bf16, fp8 or q8_0, got " + name);
        dtype = parsed;
      },
      "how the KV cache stores keys and values: f32 (4 bytes a value), bf16 (2; the default on a GPU for models "
      "that are not float32), fp8 (e4m3 with a float scale per position and head: 1.06 bytes at head_dim 64, "
      "1.03 at 128) or q8_0 (int8 blocks with a scale per 32 values, 1.06 bytes; CPU only); default f32 on the CPU");
}

KvDType default_kv_dtype(const Backend& backend, const Model& model) {
  return backend.name() == "cuda" && model.weights.embed.dtype != DType::F32 ? KvDType::BF16 : KvDType::F32;
}

EngineOptions engine_options(const EngineOptions& options, const KvPoolOptions& pool, const ModelConfig& config,
                             const TensorParallel& ranks) {
  EngineOptions out = options;
  const Backend& backend = ranks.backend(0);
  out.kv_dtype = pool.kv_dtype.value_or(default_kv_dtype(backend, ranks.model()));
  if (out.kv_dtype == KvDType::Q8_0 && backend.name() != "cpu") {
    fail("--kv-cache-dtype q8_0 runs on the CPU only; the {} backend keeps keys and values in f32, bf16 or fp8",
         backend.name());
  }
  double kv_cache_gib = pool.kv_cache_gib;
  if (kv_cache_gib == 0) {
    // A GPU keeps some memory back for activations (a 4096-token prefill of an 8B model takes ~1 GiB).
    const int64_t budget = ranks.kv_budget(pool.gpu_memory_utilization) - (1ll << 30);
    kv_cache_gib = backend.name() == "cpu" ? 0.25 : static_cast<double>(budget) / (1 << 30);
    if (kv_cache_gib <= 0) {
      fail(
          "--gpu-memory-utilization {}: no GPU memory is left for the KV cache after the weights; raise it or pass "
          "--kv-cache-memory",
          pool.gpu_memory_utilization);
    }
  }
  out.kv_cache_bytes = static_cast<int64_t>(kv_cache_gib * (1 << 30));
  const int64_t context = resolve_max_model_len(out, config);
  const int64_t blocks =
      out.kv_cache_bytes / KvCache::bytes_per_block(ranks.rank_config().kv_shape(), out.block_size, out.kv_dtype);
  const int64_t tokens = blocks * out.block_size;
  log::info("KV cache: {:.2f} GiB {}{}, {} blocks of {} tokens = {} tokens ({} full-context sequences of {}{})",
            kv_cache_gib, kv_dtype_name(out.kv_dtype), ranks.ranks() > 1 ? " per rank" : "", blocks, out.block_size,
            tokens, tokens / context, context, context < config.max_positions ? ", --max-model-len" : "");
  if (tokens < context) {
    log::warning(
        "the KV cache holds {} tokens, less than one sequence of the full context ({}): longer requests will be "
        "refused. Raise --kv-cache-memory, or lower --max-model-len to {} or less",
        tokens, context, tokens);
  }
  return out;
}

}  // namespace nanoserve::cli
