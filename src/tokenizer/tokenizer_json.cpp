#include "tokenizer/tokenizer_json.h"

#include <simdjson.h>

#include <vector>

#include "util/error.h"
#include "util/json_parse.h"

namespace nanoserve {

namespace dom = simdjson::dom;

namespace {

// A merge is written "a b" (older files) or ["a", "b"].
BpeModel::MergePair merge_parts(dom::element m) {
  if (m.is_array()) {
    dom::array parts = m.get_array();
    if (parts.size() == 2 && parts.at(0).is_string() && parts.at(1).is_string()) {
      return {std::string_view(parts.at(0)), std::string_view(parts.at(1))};
    }
  } else if (m.is_string()) {
    const std::string_view s = m;
    const size_t space = s.find(' ', 1);
    if (space != std::string_view::npos) return {s.substr(0, space), s.substr(space + 1)};
  }
  fail("BPE merge {} is neither \"a b\" nor [\"a\", \"b\"]", simdjson::minify(m));
}

std::string optional_string(dom::object model, const char* key) {
  dom::element v;
  if (model[key].get(v) != simdjson::SUCCESS || v.is_null()) return "";
  if (!v.is_string()) fail("BPE option '{}' must be a string", key);
  return std::string(std::string_view(v));
}

bool optional_bool(dom::object model, const char* key) {
  dom::element v;
  if (model[key].get(v) != simdjson::SUCCESS || v.is_null()) return false;
  if (!v.is_bool()) fail("BPE option '{}' must be true or false", key);
  return bool(v);
}

std::unique_ptr<BpeModel> read_bpe(dom::object model) {
  dom::element type;
  if (model["type"].get(type) == simdjson::SUCCESS && (!type.is_string() || std::string_view(type) != "BPE")) {
    fail("model type {} is not supported (supported: BPE)", simdjson::minify(type));
  }
  for (const char* affix : {"continuing_subword_prefix", "end_of_word_suffix"}) {
    if (!optional_string(model, affix).empty()) fail("BPE option '{}' is not supported", affix);
  }
  dom::element dropout;
  if (model["dropout"].get(dropout) == simdjson::SUCCESS && !dropout.is_null())
    fail("BPE option 'dropout' is not supported");

  BpeModel::Vocab vocab;
  dom::object entries = model["vocab"].get_object();
  vocab.reserve(entries.size(), 8 * entries.size());
  for (auto [token, id] : entries) {
    const int64_t value = id.get_int64();
    if (value < 0 || value > INT32_MAX) fail("vocab: id {} of '{}' is out of range", value, token);
    vocab.insert(token, static_cast<int32_t>(value));
  }
  std::vector<BpeModel::MergePair> merges;
  dom::array listed = model["merges"].get_array();
  merges.reserve(listed.size());
  for (dom::element m : listed) merges.push_back(merge_parts(m));

  BpeModel::Options options{.ignore_merges = optional_bool(model, "ignore_merges"),
                            .byte_fallback = optional_bool(model, "byte_fallback"),
                            .fuse_unk = optional_bool(model, "fuse_unk"),
                            .unk_token = optional_string(model, "unk_token")};
  return std::make_unique<BpeModel>(std::move(vocab), merges, std::move(options));
}

// A small top-level member as nlohmann::json; null when absent.
nlohmann::json component(dom::object root, const char* key) {
  dom::element v;
  if (root[key].get(v) != simdjson::SUCCESS) return nullptr;
  return parse_json(simdjson::minify(v), std::string("tokenizer.json: ") + key);
}

}  // namespace

TokenizerJson parse_tokenizer_json(std::string_view text) {
  try {
    dom::parser parser;
    const simdjson::padded_string padded(text);
    dom::object root = parser.parse(padded).get_object();
    TokenizerJson result;
    result.model = read_bpe(root["model"].get_object());
    result.normalizer = component(root, "normalizer");
    result.pre_tokenizer = component(root, "pre_tokenizer");
    result.post_processor = component(root, "post_processor");
    result.decoder = component(root, "decoder");
    if (auto added = component(root, "added_tokens"); !added.is_null()) result.added_tokens = std::move(added);
    return result;
  } catch (const simdjson::simdjson_error& e) {
    fail("malformed tokenizer.json: {}", e.what());
  }
}

}  // namespace nanoserve
