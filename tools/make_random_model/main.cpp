// make_random_model: a model of a real shape with random weights of realistic scale, for benchmarks.
// Writes DIR/hf (config.json, model.safetensors in bf16, the given tokenizer.json) and
// DIR/model-bf16.gguf (the same weights; q/k rows permuted into llama.cpp's RoPE layout, as its
// converter does, and the vocabulary as tokenizer.ggml.*). --quantize q8_0,q4_k_m also writes
// DIR/model-q8_0.gguf and DIR/model-q4_k_m.gguf with nanoserve's plain quantizers (formats/quant.h)
// and llama.cpp's Q4_K_M choice of types; llama.cpp's llama-quantize makes closer fits of the same
// types (bench/cpu/vs_llamacpp uses it where the peer is built).
//
//   make_random_model --shape llama-3.2-1b --tokenizer DIR_WITH_TOKENIZER_JSON --out DIR [--quantize q8_0,q4_k_m]
#include <fmt/format.h>

#include <CLI/CLI.hpp>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>

#include "formats/dtype.h"
#include "formats/gguf_writer.h"
#include "formats/quant.h"
#include "formats/safetensors.h"
#include "util/error.h"
#include "util/json_fields.h"

namespace nanoserve {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

struct Shape {
  const char* name;
  int64_t hidden, layers, heads, kv_heads, intermediate, vocab, max_positions;
  double rope_theta;
  bool tied;
};

// Published shapes (config.json of each model); no RoPE scaling (it costs nothing at these lengths).
constexpr Shape kShapes[] = {
    {"llama-3.2-1b", 2048, 16, 32, 8, 8192, 128256, 131072, 500000.0, true},
    {"llama-3.2-3b", 3072, 28, 24, 8, 8192, 128256, 131072, 500000.0, true},
    {"llama-3.1-8b", 4096, 32, 32, 8, 14336, 128256, 131072, 500000.0, false},
    {"demo", 256, 8, 4, 2, 768, 4096, 1024, 10000.0, true},
};

// Row-major bf16 values: N(0, std) for matrices, 1 for norm gammas.
struct Tensor {
  std::string hf_name, gguf_name;
  std::vector<int64_t> shape;
  std::vector<uint16_t> bf16;
};

Tensor make(std::string hf, std::string gguf, std::vector<int64_t> shape, float stddev, std::mt19937_64& rng) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  Tensor t{std::move(hf), std::move(gguf), std::move(shape), std::vector<uint16_t>(static_cast<size_t>(n))};
  std::normal_distribution<float> normal(0.0f, stddev);
  for (auto& v : t.bf16) v = float_to_bf16(stddev == 0 ? 1.0f : normal(rng));
  return t;
}

// llama.cpp's converter permutes q/k rows per head from halves (i, i + d/2) to pairs (2i, 2i + 1).
std::vector<uint16_t> permute_rows(const Tensor& t, int64_t heads) {
  const int64_t rows = t.shape[0], cols = t.shape[1], head_dim = rows / heads, half = head_dim / 2;
  std::vector<uint16_t> out(t.bf16.size());
  for (int64_t h = 0; h < heads; ++h) {
    for (int64_t i = 0; i < half; ++i) {
      for (int s = 0; s < 2; ++s) {
        const int64_t from = h * head_dim + s * half + i, to = h * head_dim + 2 * i + s;
        std::copy_n(t.bf16.begin() + from * cols, cols, out.begin() + to * cols);
      }
    }
  }
  return out;
}

std::vector<Tensor> weights(const Shape& s, uint64_t seed) {
  std::mt19937_64 rng(seed);
  const int64_t head_dim = s.hidden / s.heads, q = s.heads * head_dim, kv = s.kv_heads * head_dim;
  const float std_dev = 0.02f;
  std::vector<Tensor> out;
  out.push_back(make("model.embed_tokens.weight", "token_embd.weight", {s.vocab, s.hidden}, std_dev, rng));
  for (int64_t l = 0; l < s.layers; ++l) {
    auto hf = [l](const char* name) { return fmt::format("model.layers.{}.{}.weight", l, name); };
    auto gg = [l](const char* name) { return fmt::format("blk.{}.{}.weight", l, name); };
    out.push_back(make(hf("input_layernorm"), gg("attn_norm"), {s.hidden}, 0, rng));
    out.push_back(make(hf("self_attn.q_proj"), gg("attn_q"), {q, s.hidden}, std_dev, rng));
    out.push_back(make(hf("self_attn.k_proj"), gg("attn_k"), {kv, s.hidden}, std_dev, rng));
    out.push_back(make(hf("self_attn.v_proj"), gg("attn_v"), {kv, s.hidden}, std_dev, rng));
    out.push_back(make(hf("self_attn.o_proj"), gg("attn_output"), {s.hidden, q}, std_dev, rng));
    out.push_back(make(hf("post_attention_layernorm"), gg("ffn_norm"), {s.hidden}, 0, rng));
    out.push_back(make(hf("mlp.gate_proj"), gg("ffn_gate"), {s.intermediate, s.hidden}, std_dev, rng));
    out.push_back(make(hf("mlp.up_proj"), gg("ffn_up"), {s.intermediate, s.hidden}, std_dev, rng));
    out.push_back(make(hf("mlp.down_proj"), gg("ffn_down"), {s.hidden, s.intermediate}, std_dev, rng));
  }
  out.push_back(make("model.norm.weight", "output_norm.weight", {s.hidden}, 0, rng));
  if (!s.tied) out.push_back(make("lm_head.weight", "output.weight", {s.vocab, s.hidden}, std_dev, rng));
  return out;
}

json hf_config(const Shape& s, const json& tokenizer_config) {
  return {{"architectures", {"LlamaForCausalLM"}},
          {"model_type", "llama"},
          {"hidden_size", s.hidden},
          {"num_hidden_layers", s.layers},
          {"num_attention_heads", s.heads},
          {"num_key_value_heads", s.kv_heads},
          {"intermediate_size", s.intermediate},
          {"vocab_size", s.vocab},
          {"max_position_embeddings", s.max_positions},
          {"rms_norm_eps", 1e-5},
          {"rope_theta", s.rope_theta},
          {"tie_word_embeddings", s.tied},
          {"hidden_act", "silu"},
          {"torch_dtype", "bfloat16"},
          {"bos_token_id", tokenizer_config.value("bos_token_id", json())},
          {"eos_token_id", tokenizer_config.value("eos_token_id", json())}};
}

// tokenizer.ggml.* for a byte-level BPE tokenizer.json (Llama 3's): tokens by id, control tokens
// for the added ones, merges as "a b", the llama-bpe pre-tokenizer.
void gguf_vocabulary(const json& tokenizer, int64_t vocab_size, GgufWriter& w, int64_t* bos, int64_t* eos) {
  std::vector<std::string> tokens(static_cast<size_t>(vocab_size));
  std::vector<int32_t> types(tokens.size(), 1);
  for (const auto& [piece, id] : tokenizer["model"]["vocab"].items()) tokens.at(id.get<size_t>()) = piece;
  for (const auto& added : tokenizer["added_tokens"]) {
    const auto id = added["id"].get<size_t>();
    tokens.at(id) = added["content"].get<std::string>();
    types[id] = 3;
    if (tokens[id] == "<|begin_of_text|>") *bos = static_cast<int64_t>(id);
    if (tokens[id] == "<|end_of_text|>") *eos = static_cast<int64_t>(id);
  }
  for (size_t id = 0; id < tokens.size(); ++id) {
    if (tokens[id].empty()) tokens[id] = fmt::format("[PAD{}]", id), types[id] = 5;
  }
  std::vector<std::string> merges;
  for (const auto& m : tokenizer["model"]["merges"]) {
    merges.push_back(m.is_string() ? m.get<std::string>() : m[0].get<std::string>() + " " + m[1].get<std::string>());
  }
  w.add_string("tokenizer.ggml.model", "gpt2");
  w.add_string("tokenizer.ggml.pre", "llama-bpe");
  w.add_strings("tokenizer.ggml.tokens", tokens);
  w.add_i32s("tokenizer.ggml.token_type", types);
  w.add_strings("tokenizer.ggml.merges", merges);
  if (*bos >= 0) w.add_u32("tokenizer.ggml.bos_token_id", static_cast<uint32_t>(*bos));
  if (*eos >= 0) w.add_u32("tokenizer.ggml.eos_token_id", static_cast<uint32_t>(*eos));
}

// One past the tokenizer's largest id, its added tokens included.
int64_t id_count(const json& tokenizer) {
  int64_t count = 0;
  for (const auto& [piece, id] : tokenizer["model"]["vocab"].items()) count = std::max(count, id.get<int64_t>() + 1);
  for (const auto& added : tokenizer["added_tokens"]) count = std::max(count, added["id"].get<int64_t>() + 1);
  return count;
}

// The GGUF header of the shape: architecture, sizes and the vocabulary.
void gguf_metadata(const Shape& shape, const json& tokenizer, uint32_t file_type, GgufWriter& gguf, int64_t* bos,
                   int64_t* eos) {
  gguf_vocabulary(tokenizer, shape.vocab, gguf, bos, eos);
  const std::string arch = "llama.";
  gguf.add_string("general.architecture", "llama");
  gguf.add_string("general.name", std::string("random ") + shape.name);
  gguf.add_u32(arch + "block_count", static_cast<uint32_t>(shape.layers));
  gguf.add_u32(arch + "context_length", static_cast<uint32_t>(shape.max_positions));
  gguf.add_u32(arch + "embedding_length", static_cast<uint32_t>(shape.hidden));
  gguf.add_u32(arch + "feed_forward_length", static_cast<uint32_t>(shape.intermediate));
  gguf.add_u32(arch + "attention.head_count", static_cast<uint32_t>(shape.heads));
  gguf.add_u32(arch + "attention.head_count_kv", static_cast<uint32_t>(shape.kv_heads));
  gguf.add_f32(arch + "attention.layer_norm_rms_epsilon", 1e-5f);
  gguf.add_f32(arch + "rope.freq_base", static_cast<float>(shape.rope_theta));
  gguf.add_u32(arch + "vocab_size", static_cast<uint32_t>(shape.vocab));
  gguf.add_u32(arch + "rope.dimension_count", static_cast<uint32_t>(shape.hidden / shape.heads));
  gguf.add_u32("general.file_type", file_type);
}

// A file type: the GGUF file_type and each matrix's block type.
struct FileType {
  const char* name;
  uint32_t file_type;
  GgmlType (*matrix_type)(const std::string& gguf_name, int64_t layer, int64_t layers);
};

// llama.cpp's Q4_K_M: Q6_K for the embedding (the tied LM head) and for attn_v and ffn_down in
// the first and last eighth of the layers and every third between; Q4_K elsewhere.
GgmlType q4_k_m_type(const std::string& name, int64_t layer, int64_t layers) {
  const bool more_bits = layer < layers / 8 || layer >= 7 * layers / 8 || (layer - layers / 8) % 3 == 2;
  if (name == "token_embd.weight" || name == "output.weight") return GgmlType::Q6_K;
  if ((name.ends_with("attn_v.weight") || name.ends_with("ffn_down.weight")) && more_bits) return GgmlType::Q6_K;
  return GgmlType::Q4_K;
}

constexpr FileType kFileTypes[] = {
    {"bf16", 32, [](const std::string&, int64_t, int64_t) { return GgmlType::BF16; }},
    {"q8_0", 7, [](const std::string&, int64_t, int64_t) { return GgmlType::Q8_0; }},
    {"q4_k_m", 15, q4_k_m_type},
};

// The layer of a blk.N. tensor name (-1 for the others).
int64_t layer_of(const std::string& gguf_name) {
  return gguf_name.starts_with("blk.") ? std::stoll(gguf_name.substr(4)) : -1;
}

// bf16 matrix rows as `type`'s bytes.
std::vector<uint8_t> encode(const std::vector<uint16_t>& bf16, GgmlType type) {
  if (type == GgmlType::BF16) {
    std::vector<uint8_t> bytes(bf16.size() * 2);
    std::memcpy(bytes.data(), bf16.data(), bytes.size());
    return bytes;
  }
  std::vector<float> values(bf16.size());
  for (size_t i = 0; i < bf16.size(); ++i) values[i] = bf16_to_float(bf16[i]);
  const auto n = static_cast<int64_t>(values.size());
  const DType dtype = type == GgmlType::Q8_0 ? DType::Q8_0 : type == GgmlType::Q4_K ? DType::Q4_K : DType::Q6_K;
  std::vector<uint8_t> bytes(static_cast<size_t>(dtype_bytes(dtype, n)));
  if (type == GgmlType::Q8_0) quantize_row_q8_0(values.data(), bytes.data(), n);
  if (type == GgmlType::Q4_K) quantize_row_q4_k(values.data(), bytes.data(), n);
  if (type == GgmlType::Q6_K) quantize_row_q6_k(values.data(), bytes.data(), n);
  return bytes;
}

// DIR/model-<type>.gguf: the matrices (q/k rows permuted) in the file type's blocks, norms in float32.
void write_gguf(const Shape& shape, const json& tokenizer, const std::vector<Tensor>& tensors, const FileType& type,
                const fs::path& path) {
  GgufWriter gguf;
  int64_t bos = -1, eos = -1;
  gguf_metadata(shape, tokenizer, type.file_type, gguf, &bos, &eos);
  std::vector<std::vector<uint8_t>> contents;  // what the writer reads from, alive until write()
  contents.reserve(tensors.size());
  for (const auto& t : tensors) {
    if (t.shape.size() == 1) {  // norms are float32 in GGUF, as the converter writes them
      contents.emplace_back(t.bf16.size() * 4);
      auto* gamma = reinterpret_cast<float*>(contents.back().data());
      for (size_t i = 0; i < t.bf16.size(); ++i) gamma[i] = bf16_to_float(t.bf16[i]);
      gguf.add_tensor(t.gguf_name, GgmlType::F32, t.shape, contents.back().data(), contents.back().size());
      continue;
    }
    const bool is_q = t.gguf_name.ends_with("attn_q.weight"), is_k = t.gguf_name.ends_with("attn_k.weight");
    const GgmlType block = type.matrix_type(t.gguf_name, layer_of(t.gguf_name), shape.layers);
    contents.push_back(encode(is_q || is_k ? permute_rows(t, is_q ? shape.heads : shape.kv_heads) : t.bf16, block));
    gguf.add_tensor(t.gguf_name, block, t.shape, contents.back().data(), contents.back().size());
  }
  gguf.write(path.string());
  fmt::print(stderr, "wrote {}\n", path.string());
}

void run(const std::string& shape_name, const std::string& tokenizer_dir, const std::string& out_dir, uint64_t seed,
         int64_t vocab_size, const std::vector<std::string>& quantized) {
  const Shape* found = nullptr;
  for (const auto& s : kShapes) {
    if (s.name == shape_name) found = &s;
  }
  if (!found) fail("unknown shape '{}' (known: llama-3.2-1b, llama-3.2-3b, llama-3.1-8b, demo)", shape_name);
  std::vector<const FileType*> types = {&kFileTypes[0]};
  for (const std::string& name : quantized) {
    const auto* it = std::find_if(std::begin(kFileTypes) + 1, std::end(kFileTypes),
                                  [&](const FileType& t) { return name == t.name; });
    if (it == std::end(kFileTypes)) fail("--quantize {}: unknown type (known: q8_0, q4_k_m)", name);
    types.push_back(it);
  }
  Shape shape = *found;
  if (vocab_size > 0) shape.vocab = vocab_size;
  const json tokenizer = read_json_file((fs::path(tokenizer_dir) / "tokenizer.json").string());
  if (const int64_t ids = id_count(tokenizer); ids > shape.vocab) {
    fail("the tokenizer's ids reach {} but the vocabulary has {} rows (shape '{}'); pass --vocab-size {} to widen it",
         ids - 1, shape.vocab, shape_name, ids);
  }
  const fs::path hf_dir = fs::path(out_dir) / "hf";
  fs::create_directories(hf_dir);
  fs::copy_file(fs::path(tokenizer_dir) / "tokenizer.json", hf_dir / "tokenizer.json",
                fs::copy_options::overwrite_existing);
  GgufWriter vocabulary;  // for the special tokens' ids
  int64_t bos = -1, eos = -1;
  gguf_vocabulary(tokenizer, shape.vocab, vocabulary, &bos, &eos);
  std::ofstream(hf_dir / "config.json") << hf_config(shape, {{"bos_token_id", bos}, {"eos_token_id", eos}}).dump(2);
  std::ofstream(hf_dir / "tokenizer_config.json")
      << json{{"add_bos_token", true}, {"bos_token", "<|begin_of_text|>"}, {"eos_token", "<|end_of_text|>"}}.dump(2);

  fmt::print(stderr, "generating {} weights...\n", shape.name);
  const auto tensors = weights(shape, seed);
  std::vector<TensorToWrite> hf;
  for (const auto& t : tensors) hf.push_back({t.hf_name, DType::BF16, t.shape, t.bf16.data()});
  write_safetensors((hf_dir / "model.safetensors").string(), hf);
  fmt::print(stderr, "wrote {}\n", hf_dir.string());
  for (const FileType* type : types) {
    write_gguf(shape, tokenizer, tensors, *type, fs::path(out_dir) / fmt::format("model-{}.gguf", type->name));
  }
}

}  // namespace
}  // namespace nanoserve

int main(int argc, char** argv) {
  CLI::App app{"make_random_model: a model of a real shape with random weights, as HF safetensors and GGUF"};
  std::string shape = "llama-3.2-1b", tokenizer, out;
  uint64_t seed = 1;
  int64_t vocab_size = 0;
  std::vector<std::string> quantized;
  app.add_option("--shape", shape, "llama-3.2-1b (default), llama-3.2-3b, llama-3.1-8b (untied LM head) or demo");
  app.add_option("--tokenizer", tokenizer, "directory holding a byte-level BPE tokenizer.json (e.g. Llama 3's)")
      ->required();
  app.add_option("--out", out, "output directory")->required();
  app.add_option("--seed", seed, "random seed (default 1)");
  app.add_option("--vocab-size", vocab_size,
                 "vocabulary rows instead of the shape's, e.g. the demo shape with Llama 3's 128k tokens: a small "
                 "model whose sampling and grammar masks cost what a large one's do")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 24));
  app.add_option("--quantize", quantized, "also write these GGUF types: q8_0, q4_k_m (comma-separated)")
      ->delimiter(',');
  CLI11_PARSE(app, argc, argv);
  try {
    nanoserve::run(shape, tokenizer, out, seed, vocab_size, quantized);
  } catch (const std::exception& e) {
    fmt::print(stderr, "error: {}\n", e.what());
    return 1;
  }
  return 0;
}
