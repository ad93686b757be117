// A GGUF file as a Model: llama.cpp's `{arch}.*` metadata becomes the config.json of the same
// model, so the family descriptions, shape checks and forward pass are the ones the Hugging Face
// path uses. What the converter changed is undone in the description, never by copying weights:
// Llama q/k rows permuted for llama.cpp's RoPE rotate interleaved pairs; Gemma norms stored as
// 1 + w are plain RMSNorm gammas.
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <nlohmann/json.hpp>

#include "formats/gguf_metadata.h"
#include "model/loader.h"
#include "util/error.h"

namespace nanoserve {

namespace {

using json = nlohmann::json;

struct GgufArch {
  std::string_view gguf;        // general.architecture
  std::string_view model_type;  // the family it maps to
  bool permuted_qk;             // the converter permuted q/k rows into interleaved RoPE pairs
  bool norms_plus_one;          // the converter stored Gemma's (1 + w) as the gamma
};

constexpr GgufArch kArchs[] = {
    {"llama", "llama", true, false},   {"qwen2", "qwen2", false, false},       {"qwen3", "qwen3", false, false},
    {"gemma2", "gemma2", false, true}, {"gemma3", "gemma3_text", false, true}, {"olmoe", "olmoe", false, false},
    {"phi3", "phi3", false, false},    {"gpt2", "gpt2", false, false},
};

// Tensors that carry RoPE parameters rather than weights.
constexpr const char* kRopeFreqs = "rope_freqs.weight";
constexpr const char* kRopeLong = "rope_factors_long.weight";
constexpr const char* kRopeShort = "rope_factors_short.weight";

const GgufArch& find_arch(std::string_view name, const std::string& source) {
  for (const auto& a : kArchs) {
    if (a.gguf == name) return a;
  }
  std::vector<std::string_view> known;
  for (const auto& a : kArchs) known.push_back(a.gguf);
  fail("{}: unsupported architecture: general.architecture '{}' (supported: {})", source, name, fmt::join(known, ", "));
}

// Row-major views of the file's tensors: ggml lists dimensions innermost first, so they reverse.
std::map<std::string, TensorView> tensor_views(const GgufContents& contents, const std::string& source) {
  std::map<std::string, TensorView> views;
  for (const auto& t : contents.tensors) {
    TensorView v;
    v.name = t.name;
    if (!dtype_from_ggml(t.type, &v.dtype)) {
      const GgmlTypeInfo* info = ggml_type_info(static_cast<uint32_t>(t.type));
      fail(
          "{}: {}: tensor type {} is not supported (nanoserve reads f32, f16, bf16, q4_0, q4_1, q5_0, q5_1, q8_0, "
          "q4_K, q5_K, q6_K)",
          source, t.name, info ? info->name : "unknown");
    }
    for (auto d = t.dims.rbegin(); d != t.dims.rend(); ++d) v.shape.push_back(static_cast<int64_t>(*d));
    v.data = t.data;
    v.nbytes = t.bytes;
    views.emplace(t.name, std::move(v));
  }
  return views;
}

// A small float32 tensor's values (RoPE factors).
std::vector<double> tensor_values(const TensorView& t, const std::string& source) {
  if (t.dtype != DType::F32 || t.shape.size() != 1) {
    fail("{}: {}: {} {}, expected a 1-D F32 tensor", source, t.name, dtype_name(t.dtype), shape_str(t.shape));
  }
  std::vector<double> out(static_cast<size_t>(t.shape[0]));
  for (size_t i = 0; i < out.size(); ++i) {
    float f;
    std::memcpy(&f, t.data + i * sizeof f, sizeof f);
    out[i] = f;
  }
  return out;
}

// rope_scaling from rope.scaling.* and the factor tensors of LongRoPE.
void rope_config(const GgufMetadata& m, const std::string& p, const std::map<std::string, TensorView>& tensors,
                 json& j) {
  const std::string type(m.string(p + "rope.scaling.type").value_or("none"));
  json scaling = json::object();
  if (tensors.count(kRopeLong) && tensors.count(kRopeShort)) {
    scaling = {{"rope_type", "longrope"},
               {"long_factor", tensor_values(tensors.at(kRopeLong), m.source())},
               {"short_factor", tensor_values(tensors.at(kRopeShort), m.source())}};
    if (auto f = m.number(p + "rope.scaling.attn_factor")) scaling["attention_factor"] = *f;
  } else if (type == "linear" || type == "yarn") {
    scaling = {{"rope_type", type}, {"factor", m.number(p + "rope.scaling.factor").value_or(1.0)}};
  } else if (type != "none") {
    fail("{}: {}rope.scaling.type '{}' is not supported (none, linear, yarn)", m.source(), p, type);
  }
  if (auto original = m.integer(p + "rope.scaling.original_context_length")) {
    j["original_max_position_embeddings"] = *original;
    if (!scaling.empty()) scaling["original_max_position_embeddings"] = *original;
  }
  if (!scaling.empty()) j["rope_scaling"] = scaling;
}

void put_integer(const GgufMetadata& m, const std::string& key, json& j, const char* field) {
  if (auto v = m.integer(key)) j[field] = *v;
}

void put_number(const GgufMetadata& m, const std::string& key, json& j, const char* field) {
  if (auto v = m.number(key)) j[field] = *v;
}

// The config.json of the model the file was converted from, as far as the metadata and tensors say.
json config_json(const GgufMetadata& m, const GgufArch& arch, const std::map<std::string, TensorView>& tensors) {
  const std::string p = std::string(arch.gguf) + ".";
  json j = {{"model_type", arch.model_type}};
  j["hidden_size"] = m.required_integer(p + "embedding_length");
  j["num_hidden_layers"] = m.required_integer(p + "block_count");
  j["intermediate_size"] = m.required_integer(p + "feed_forward_length");
  j["num_attention_heads"] = m.required_integer(p + "attention.head_count");
  put_integer(m, p + "attention.head_count_kv", j, "num_key_value_heads");
  put_integer(m, p + "attention.key_length", j, "head_dim");
  put_integer(m, p + "context_length", j, "max_position_embeddings");
  put_number(m, p + "attention.layer_norm_rms_epsilon", j, "rms_norm_eps");
  put_number(m, p + "attention.layer_norm_epsilon", j, "rms_norm_eps");
  j["rope_theta"] = m.number(p + "rope.freq_base").value_or(10000.0);
  put_integer(m, p + "expert_count", j, "num_experts");
  put_integer(m, p + "expert_used_count", j, "num_experts_per_tok");
  if (auto window = m.integer(p + "attention.sliding_window"); window && *window > 0) j["sliding_window"] = *window;
  put_number(m, p + "attn_logit_softcapping", j, "attn_logit_softcapping");
  put_number(m, p + "final_logit_softcapping", j, "final_logit_softcapping");
  rope_config(m, p, tensors, j);

  auto embed = tensors.find("token_embd.weight");
  if (auto vocab = m.integer(p + "vocab_size")) {
    j["vocab_size"] = *vocab;
  } else if (embed != tensors.end() && embed->second.shape.size() == 2) {
    j["vocab_size"] = embed->second.shape[0];
  }
  j["tie_word_embeddings"] = !tensors.count("output.weight");
  j["attention_bias"] = tensors.count("blk.0.attn_q.bias") > 0;
  if (auto bos = m.integer("tokenizer.ggml.bos_token_id")) j["bos_token_id"] = *bos;
  json eos = json::array();
  for (const char* key :
       {"tokenizer.ggml.eos_token_id", "tokenizer.ggml.eot_token_id", "tokenizer.ggml.eom_token_id"}) {
    if (auto id = m.integer(key); id && std::find(eos.begin(), eos.end(), *id) == eos.end()) eos.push_back(*id);
  }
  if (!eos.empty()) j["eos_token_id"] = eos;

  if (arch.gguf == "gemma2") {
    // llama.cpp scales queries by 1/sqrt(head_dim), except Gemma 2 27B (46 layers): hidden / heads.
    const int64_t heads = j["num_attention_heads"], layers = j["num_hidden_layers"], hidden = j["hidden_size"];
    if (heads > 0) j["query_pre_attn_scalar"] = layers == 46 ? hidden / heads : j.value("head_dim", hidden / heads);
  }
  if (arch.gguf == "gemma3") j["rope_local_base_freq"] = 10000.0;  // llama.cpp's fixed local base
  return j;
}

// What a file says by having a tensor: q/k norms (per head, or over the whole projection, by the
// gamma's length), Gemma-style norms after attention and MLP, and experts (Mixtral is a llama
// file with ffn_*_exps: a softmax over the top-k router logits, so renormalized probabilities).
void tensor_features(const GgufMetadata& m, const GgufArch& arch, const std::map<std::string, TensorView>& tensors,
                     const ModelConfig& config, ArchSpec& spec) {
  auto q_norm = tensors.find("blk.0.attn_q_norm.weight");
  if (q_norm == tensors.end()) {
    spec.qk_norm = QkNorm::None;
  } else if (q_norm->second.numel() == config.head_dim) {
    spec.qk_norm = QkNorm::PerHead;
  } else if (q_norm->second.numel() == config.heads * config.head_dim) {
    spec.qk_norm = QkNorm::Full;
  } else {
    fail("{}: blk.0.attn_q_norm.weight has {} values, neither head_dim ({}) nor heads * head_dim ({})", m.source(),
         q_norm->second.numel(), config.head_dim, config.heads * config.head_dim);
  }
  spec.post_norms = tensors.count("blk.0.post_attention_norm.weight") > 0;
  if (tensors.count("blk.0.ffn_gate_exps.weight") && spec.mlp != MlpKind::Moe) {
    const std::string p = std::string(arch.gguf) + ".";
    spec.mlp = MlpKind::Moe;
    spec.moe.experts = m.required_integer(p + "expert_count");
    spec.moe.top_k = m.required_integer(p + "expert_used_count");
    spec.moe.norm_topk_prob = true;
    if (spec.moe.experts < 1 || spec.moe.top_k < 1 || spec.moe.top_k > spec.moe.experts) {
      fail("{}: {}expert_used_count {} of {}expert_count {}", m.source(), p, spec.moe.top_k, p, spec.moe.experts);
    }
  }
}

// Rotary dims below head_dim (rope.dimension_count) become partial_rotary_factor.
void partial_rotary(const GgufMetadata& m, const GgufArch& arch, ModelConfig& config) {
  auto dims = m.integer(std::string(arch.gguf) + ".rope.dimension_count");
  if (!dims || *dims == config.head_dim) return;
  if (*dims <= 0 || *dims > config.head_dim || *dims % 2 != 0) {
    fail("{}: {}.rope.dimension_count = {}, expected an even number up to head_dim {}", m.source(), arch.gguf, *dims,
         config.head_dim);
  }
  config.rope.partial_rotary_factor = static_cast<double>(*dims) / static_cast<double>(config.head_dim);
}

// llama3 RoPE arrives precomputed: one divisor per frequency in rope_freqs.
void frequency_factors(const std::map<std::string, TensorView>& tensors, const std::string& source,
                       ModelConfig& config) {
  auto it = tensors.find(kRopeFreqs);
  if (it == tensors.end()) return;
  if (config.rope.scaling != RopeScaling::None)
    fail("{}: {} together with rope.scaling.type is not supported", source, kRopeFreqs);
  config.rope.scaling = RopeScaling::Factors;
  config.rope.freq_factors = tensor_values(it->second, source);
}

// An embedding model's {arch}.pooling_type, as llama.cpp writes it: 1 mean, 2 CLS, 3 last token
// (0: none, a generative model). llama.cpp normalizes embeddings by default; so does this.
std::optional<Pooling> gguf_pooling(const GgufMetadata& meta, const GgufArch& arch, const std::string& source) {
  const auto type = meta.integer(std::string(arch.gguf) + ".pooling_type");
  if (!type || *type == 0) return std::nullopt;
  switch (*type) {
    case 1: return Pooling{PoolingMode::Mean, true};
    case 2: return Pooling{PoolingMode::Cls, true};
    case 3: return Pooling{PoolingMode::Last, true};
  }
  fail("{}: {}.pooling_type {} is not supported (1 mean, 2 cls, 3 last)", source, arch.gguf, *type);
}

}  // namespace

Model model_from_gguf(const GgufContents& contents, const std::string& source) {
  Model model;
  const GgufMetadata meta(contents, source);
  const GgufArch& arch = find_arch(meta.required_string("general.architecture"), source);
  model.tensors = tensor_views(contents, source);
  json j = config_json(meta, arch, model.tensors);
  const ArchFamily& family = find_family(std::string(arch.model_type));
  if (family.normalize_config) family.normalize_config(j);
  model.config = parse_model_config(j, source);
  check_layer_count(model.config, model.tensors, source);
  partial_rotary(meta, arch, model.config);
  frequency_factors(model.tensors, source, model.config);
  model.arch = family.describe(j, model.config, source);
  tensor_features(meta, arch, model.tensors, model.config, model.arch);
  if (arch.permuted_qk) model.arch.rope_pairs = RopePairs::Interleaved;
  if (arch.norms_plus_one && model.arch.norm == NormKind::RmsPlusOne) model.arch.norm = NormKind::Rms;
  model.names = gguf_weight_names(*family.names);
  model.pooling = gguf_pooling(meta, arch, source);
  with_context(source, [&] { bind_weights(model, {kRopeFreqs, kRopeLong, kRopeShort}, ""); });
  return model;
}

Model load_gguf_model(const std::string& path, const LoadOptions& options) {
  auto file = std::make_unique<GgufFile>(path);
  Model model = model_from_gguf(file->contents(), path);
  model.gguf = std::move(file);
  if (options.prefetch) prefetch_weights(model);
  return model;
}

}  // namespace nanoserve
