#include "model/config.h"

#include <filesystem>

#include "util/error.h"
#include "util/json_fields.h"

namespace nanoserve {

using json = nlohmann::json;

namespace {

RopeScaling parse_scaling_type(const std::string& type, const std::string& source) {
  static const std::pair<const char*, RopeScaling> kTypes[] = {
      {"default", RopeScaling::None}, {"linear", RopeScaling::Linear},   {"llama3", RopeScaling::Llama3},
      {"yarn", RopeScaling::Yarn},    {"dynamic", RopeScaling::Dynamic}, {"longrope", RopeScaling::LongRope}};
  for (const auto& [name, scaling] : kTypes) {
    if (type == name) return scaling;
  }
  fail("{}: unsupported RoPE scaling type '{}' (supported: default, linear, llama3, yarn, dynamic, longrope)", source,
       type);
}

std::vector<double> number_list(const JsonFields& f, const std::string& key) {
  const json& v = f.value(key);
  if (!v.is_array() || v.empty()) f.invalid(key, "a non-empty list of numbers");
  std::vector<double> out;
  for (const auto& x : v) {
    if (!x.is_number()) f.invalid(key, "a non-empty list of numbers");
    out.push_back(x.get<double>());
  }
  return out;
}

// original_max_position_embeddings lives in the RoPE parameters, or at the top level in older files.
int64_t original_max(const JsonFields& params, const JsonFields& top) {
  const char* key = "original_max_position_embeddings";
  return params.has(key) ? params.positive_int(key) : top.positive_int(key);
}

// factor, or when absent the ratio of the extended context to the original one.
double factor_or_context_ratio(const JsonFields& params, const JsonFields& top, int64_t original) {
  if (params.has("factor")) return params.positive_number("factor");
  return static_cast<double>(top.positive_int("max_position_embeddings", 2048)) / static_cast<double>(original);
}

void parse_scaling(const json& params, const json& top_json, const std::string& source, RopeConfig& rope) {
  JsonFields f(params, source), top(top_json, source);
  // transformers < 4.45 spelled the key "type"; llama3 configs of that era spell it "rope_type".
  std::string type = f.has("rope_type") ? f.string("rope_type") : f.string("type", "default");
  rope.scaling = parse_scaling_type(type, source);
  switch (rope.scaling) {
    case RopeScaling::None:
    case RopeScaling::Factors:  // a GGUF tensor, never named in config.json
      break;
    case RopeScaling::Linear:
    case RopeScaling::Dynamic: rope.factor = f.positive_number("factor"); break;
    case RopeScaling::Llama3:
      rope.factor = f.positive_number("factor");
      rope.low_freq_factor = f.positive_number("low_freq_factor");
      rope.high_freq_factor = f.positive_number("high_freq_factor");
      rope.original_max_positions = original_max(f, top);
      if (rope.high_freq_factor <= rope.low_freq_factor) {
        fail("{}: high_freq_factor ({}) must exceed low_freq_factor ({})", source, rope.high_freq_factor,
             rope.low_freq_factor);
      }
      break;
    case RopeScaling::Yarn:
      rope.original_max_positions = original_max(f, top);
      rope.factor = factor_or_context_ratio(f, top, rope.original_max_positions);
      rope.beta_fast = f.positive_number("beta_fast", 32);
      rope.beta_slow = f.positive_number("beta_slow", 1);
      rope.mscale = f.positive_number("mscale", 0);
      rope.mscale_all_dim = f.positive_number("mscale_all_dim", 0);
      rope.truncate = f.boolean("truncate", true);
      if (f.has("attention_factor")) rope.attention_factor = f.positive_number("attention_factor");
      break;
    case RopeScaling::LongRope:
      rope.original_max_positions = original_max(f, top);
      rope.factor = factor_or_context_ratio(f, top, rope.original_max_positions);
      rope.short_factor = number_list(f, "short_factor");
      rope.long_factor = number_list(f, "long_factor");
      if (f.has("attention_factor")) rope.attention_factor = f.positive_number("attention_factor");
      break;
  }
}

std::vector<int64_t> parse_token_ids(const JsonFields& f, const std::string& key) {
  if (!f.has(key)) return {};
  // Accepts an id or a list of ids, as generation_config.json writes either.
  std::vector<int64_t> ids;
  auto push = [&](const json& v) {
    if (!v.is_number_integer() || v.get<int64_t>() < 0) f.invalid(key, "a token id or a list of token ids");
    ids.push_back(v.get<int64_t>());
  };
  const json& value = f.value(key);
  if (value.is_array()) {
    for (const auto& v : value) push(v);
  } else {
    push(value);
  }
  return ids;
}

std::optional<int64_t> parse_bos(const JsonFields& f) {
  auto ids = parse_token_ids(f, "bos_token_id");
  if (ids.size() > 1) f.invalid("bos_token_id", "a single token id");
  return ids.empty() ? std::nullopt : std::optional<int64_t>(ids[0]);
}

}  // namespace

RopeConfig parse_rope_parameters(const json& params, const json& top, const std::string& source) {
  JsonFields f(params, source), t(top, source);
  RopeConfig rope;
  parse_scaling(params, top, source, rope);
  rope.theta = f.positive_number("rope_theta", t.positive_number("rope_theta", 10000.0));
  rope.partial_rotary_factor =
      f.positive_number("partial_rotary_factor", t.positive_number("partial_rotary_factor", 1.0));
  // The factor may come from either object, so the error names the value rather than one of them.
  if (rope.partial_rotary_factor > 1)
    fail("{}: partial_rotary_factor must be at most 1, got {}", source, rope.partial_rotary_factor);
  return rope;
}

RopeConfig parse_rope_config(const json& j, const std::string& source) {
  JsonFields f(j, source);
  if (f.has("rope_parameters"))
    return parse_rope_parameters(f.object("rope_parameters"), j, source + ": rope_parameters");
  if (f.has("rope_scaling")) return parse_rope_parameters(f.object("rope_scaling"), j, source + ": rope_scaling");
  return parse_rope_parameters(json::object(), j, source);
}

static void parse_matryoshka(const JsonFields& f, ModelConfig& c) {
  c.matryoshka = f.boolean("is_matryoshka", false) || f.has("matryoshka_dimensions");
  if (!f.has("matryoshka_dimensions")) return;
  const json& dims = f.value("matryoshka_dimensions");
  if (!dims.is_array()) f.invalid("matryoshka_dimensions", "a list of widths");
  for (const auto& d : dims) {
    if (!d.is_number_integer() || d.get<int64_t>() < 1 || d.get<int64_t>() > c.hidden_size) {
      f.invalid("matryoshka_dimensions", fmt::format("widths from 1 to hidden_size ({})", c.hidden_size));
    }
    c.matryoshka_dimensions.push_back(d.get<int64_t>());
  }
}

ModelConfig parse_model_config(const json& j, const std::string& source) {
  JsonFields f(j, source);
  ModelConfig c;
  c.model_type = f.string("model_type");
  c.hidden_size = f.positive_int("hidden_size");
  c.intermediate_size = f.positive_int("intermediate_size");
  c.layers = f.positive_int("num_hidden_layers");
  c.heads = f.positive_int("num_attention_heads");
  c.kv_heads = f.positive_int("num_key_value_heads", c.heads);
  c.vocab_size = f.positive_int("vocab_size");
  c.max_positions = f.positive_int("max_position_embeddings", 2048);
  c.norm_eps = f.positive_number("rms_norm_eps");
  c.tied_embeddings = f.boolean("tie_word_embeddings", false);
  if (f.has("head_dim")) {
    c.head_dim = f.positive_int("head_dim");
  } else {
    if (c.hidden_size % c.heads != 0) {
      fail("{}: hidden_size ({}) is not divisible by num_attention_heads ({}) and head_dim is not given", source,
           c.hidden_size, c.heads);
    }
    c.head_dim = c.hidden_size / c.heads;
  }
  if (c.heads % c.kv_heads != 0) {
    fail("{}: num_attention_heads ({}) must be a multiple of num_key_value_heads ({})", source, c.heads, c.kv_heads);
  }
  c.rope = parse_rope_config(j, source);
  if (c.head_dim % 2 != 0) fail("{}: head_dim ({}) must be even for rotary embeddings", source, c.head_dim);
  c.bos_token_id = parse_bos(f);
  c.eos_token_ids = parse_token_ids(f, "eos_token_id");
  parse_matryoshka(f, c);
  return c;
}

ModelConfig read_model_config(const std::string& path) { return parse_model_config(read_json_file(path), path); }

void apply_generation_config(ModelConfig& cfg, const std::string& path) {
  if (!std::filesystem::exists(path)) return;
  json j = read_json_file(path);
  JsonFields f(j, path);
  if (f.has("bos_token_id")) cfg.bos_token_id = parse_bos(f);
  if (f.has("eos_token_id")) cfg.eos_token_ids = parse_token_ids(f, "eos_token_id");
}

}  // namespace nanoserve
