#include "tokenizer/tokenizer.h"

#include <filesystem>

#include "tokenizer/byte_level.h"
#include "util/error.h"
#include "util/json_fields.h"

namespace nanoserve {

using json = nlohmann::json;

namespace {

void check_added_token(const json& t) {
  for (const char* flag : {"lstrip", "rstrip", "single_word"}) {
    if (t.value(flag, false)) fail("added token {}: option '{}' is not supported yet", t.at("content").dump(), flag);
  }
}

// TemplateProcessing "single": the special-token ids before and after the sequence $A.
void parse_template(const json& post, std::vector<int32_t>& prefix, std::vector<int32_t>& suffix) {
  const json& specials = post.at("special_tokens");
  bool seen_sequence = false;
  for (const auto& item : post.at("single")) {
    if (item.contains("Sequence")) {
      seen_sequence = true;
    } else {
      const auto& key = item.at("SpecialToken").at("id").get_ref<const std::string&>();
      auto& target = seen_sequence ? suffix : prefix;
      for (const auto& id : specials.at(key).at("ids")) target.push_back(id.get<int32_t>());
    }
  }
}

void parse_post_processor(const json& post, std::vector<int32_t>& prefix, std::vector<int32_t>& suffix) {
  if (post.is_null()) return;
  const auto type = post.at("type").get<std::string>();
  if (type == "TemplateProcessing") {
    parse_template(post, prefix, suffix);
  } else if (type == "Sequence") {
    for (const auto& p : post.at("processors")) parse_post_processor(p, prefix, suffix);
  } else if (type != "ByteLevel") {  // ByteLevel post-processing only adjusts offsets
    fail("post-processor type '{}' is not supported (supported: TemplateProcessing, ByteLevel, Sequence)", type);
  }
}

}  // namespace

Tokenizer Tokenizer::from_file(const std::string& path) {
  const std::string file =
      std::filesystem::is_directory(path) ? (std::filesystem::path(path) / "tokenizer.json").string() : path;
  return from_json(read_json_file(file), file);
}

Tokenizer Tokenizer::from_json(const json& j, const std::string& file) {
  Tokenizer tok;
  with_context(file, [&] {
    try {
      const json& model = j.at("model");
      if (model.value("type", "BPE") != "BPE") fail("model type '{}' is not supported (supported: BPE)", model.value("type", ""));
      tok.model_ = std::make_unique<BpeModel>(model);
      if (j.contains("normalizer") && !j["normalizer"].is_null()) {
        fail("normalizer type '{}' is not supported yet", j["normalizer"].value("type", "?"));
      }
      tok.pre_tokenizer_ = make_pre_tokenizer(j.value("pre_tokenizer", json()));
      const json decoder = j.value("decoder", json());
      tok.byte_level_decoder_ = !decoder.is_null() && decoder.at("type") == "ByteLevel";
      if (!decoder.is_null() && !tok.byte_level_decoder_) {
        fail("decoder type '{}' is not supported yet (supported: ByteLevel)", decoder.at("type").get<std::string>());
      }
      for (const auto& t : j.value("added_tokens", json::array())) {
        check_added_token(t);
        tok.added_.push_back({t.at("id").get<int32_t>(), t.at("content").get<std::string>(), t.value("special", false)});
      }
      parse_post_processor(j.value("post_processor", json()), tok.prefix_, tok.suffix_);
    } catch (const json::exception& e) {
      fail("malformed tokenizer.json: {}", e.what());
    }
  });
  // Ids are dense in real files; bounding them by the number of tokens keeps a hostile file from
  // sizing the id table.
  const auto max_ids = static_cast<int64_t>(tok.model_->vocab().size() + tok.added_.size());
  auto check_id = [&](int32_t id) {
    if (id < 0 || id >= max_ids) fail("{}: token id {} is out of range for {} tokens", file, id, max_ids);
  };
  for (const auto& [token, id] : tok.model_->vocab()) {
    check_id(id);
    if (static_cast<size_t>(id) >= tok.id_to_token_.size()) tok.id_to_token_.resize(static_cast<size_t>(id) + 1);
    tok.id_to_token_[static_cast<size_t>(id)] = token;
  }
  for (const auto& t : tok.added_) {
    check_id(t.id);
    if (static_cast<size_t>(t.id) >= tok.id_to_token_.size()) tok.id_to_token_.resize(static_cast<size_t>(t.id) + 1);
    tok.id_to_token_[static_cast<size_t>(t.id)] = t.content;
  }
  tok.special_.assign(tok.id_to_token_.size(), false);
  for (const auto& t : tok.added_) tok.special_[static_cast<size_t>(t.id)] = t.special;
  return tok;
}

void Tokenizer::encode_ordinary(std::string_view text, std::vector<int32_t>& out) const {
  if (text.empty()) return;
  std::vector<std::string> pieces{std::string(text)};
  if (pre_tokenizer_) pre_tokenizer_->split(pieces);
  for (const auto& piece : pieces) model_->encode(piece, out);
}

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool add_special) const {
  std::vector<int32_t> ids;
  if (add_special) ids = prefix_;
  // Leftmost match of any added token; the longest one wins at the same position.
  size_t done = 0;
  while (done < text.size()) {
    size_t best_pos = std::string_view::npos;
    const AddedToken* best = nullptr;
    for (const auto& t : added_) {
      if (t.content.empty()) continue;
      const size_t pos = text.find(t.content, done);
      if (pos < best_pos || (pos == best_pos && pos != std::string_view::npos && t.content.size() > best->content.size())) {
        best_pos = pos;
        best = &t;
      }
    }
    if (!best) break;
    encode_ordinary(text.substr(done, best_pos - done), ids);
    ids.push_back(best->id);
    done = best_pos + best->content.size();
  }
  if (done < text.size()) encode_ordinary(text.substr(done), ids);
  if (add_special) ids.insert(ids.end(), suffix_.begin(), suffix_.end());
  return ids;
}

bool Tokenizer::is_special(int32_t id) const {
  return id >= 0 && static_cast<size_t>(id) < special_.size() && special_[static_cast<size_t>(id)];
}

std::string Tokenizer::token_bytes(int32_t id, bool skip_special) const {
  if (id < 0 || id >= vocab_size()) fail("token id {} is outside the vocabulary of {} tokens", id, vocab_size());
  if (skip_special && is_special(id)) return {};
  const std::string& token = id_to_token_[static_cast<size_t>(id)];
  return byte_level_decoder_ ? byte_level_to_bytes(token) : token;
}

std::string Tokenizer::decode(const std::vector<int32_t>& ids, bool skip_special) const {
  std::string out;
  for (int32_t id : ids) out += token_bytes(id, skip_special);
  return out;
}

}  // namespace nanoserve
