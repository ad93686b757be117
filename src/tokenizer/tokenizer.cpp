#include "tokenizer/tokenizer.h"

#include <filesystem>

#include "formats/gguf.h"
#include "tokenizer/gguf_vocab.h"
#include "tokenizer/tokenizer_json.h"
#include "util/error.h"
#include "util/json_parse.h"
#include "util/mapped_file.h"
#include "util/utf8.h"

namespace nanoserve {

using json = nlohmann::json;

namespace {

int32_t token_id(const nlohmann::json& id) {
  return static_cast<int32_t>(json_integer(id, 0, INT32_MAX, "post_processor token id"));
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
      for (const auto& id : specials.at(key).at("ids")) target.push_back(token_id(id));
    }
  }
}

void parse_post_processor(const json& post, std::vector<int32_t>& prefix, std::vector<int32_t>& suffix) {
  if (post.is_null()) return;
  const auto type = post.at("type").get<std::string>();
  if (type == "TemplateProcessing") {
    parse_template(post, prefix, suffix);
  } else if (type == "BertProcessing" || type == "RobertaProcessing") {  // [CLS] A [SEP], as ["token", id]
    prefix.push_back(token_id(post.at("cls").at(1)));
    suffix.push_back(token_id(post.at("sep").at(1)));
  } else if (type == "Sequence") {
    for (const auto& p : post.at("processors")) parse_post_processor(p, prefix, suffix);
  } else if (type != "ByteLevel") {  // ByteLevel post-processing only adjusts offsets
    fail(
        "post-processor type '{}' is not supported (supported: TemplateProcessing, BertProcessing, "
        "RobertaProcessing, ByteLevel, Sequence)",
        type);
  }
}

}  // namespace

Tokenizer Tokenizer::from_file(const std::string& path) {
  if (is_gguf_path(path)) {
    const GgufFile gguf(path);
    const json described = gguf_tokenizer_json(gguf.contents(), path);
    return from_text(with_context(path, [&] { return described.dump(); }), path);
  }
  const std::string file =
      std::filesystem::is_directory(path) ? (std::filesystem::path(path) / "tokenizer.json").string() : path;
  const MappedFile mapped(file);
  return from_text(std::string_view(reinterpret_cast<const char*>(mapped.data()), mapped.size()), file);
}

Tokenizer Tokenizer::from_text(std::string_view text, const std::string& file) {
  Tokenizer tok;
  with_context(file, [&] {
    TokenizerJson parts = parse_tokenizer_json(text);
    try {
      tok.model_ = std::move(parts.model);
      tok.normalizer_ = make_normalizer(parts.normalizer);
      tok.pre_tokenizer_ = make_pre_tokenizer(parts.pre_tokenizer);
      tok.decoder_ = make_decoder(parts.decoder);
      for (const auto& t : parts.added_tokens) tok.add_token(AddedToken::from_json(t));
      parse_post_processor(parts.post_processor, tok.prefix_, tok.suffix_);
    } catch (const json::exception& e) {
      fail("malformed tokenizer.json: {}", e.what());
    }
    tok.build_id_table(file);
  });
  return tok;
}

void Tokenizer::add_token(const AddedToken& token) {
  added_.push_back(token);
  if (token.special) special_text_.add(token);
  // A normalized token is looked for in normalized text, so in its normalized form.
  if (token.normalized && normalizer_) {
    AddedToken normalized = token;
    normalized.content = normalizer_->normalize(token.content);
    if (!normalized.content.empty()) normalized_added_.add(normalized);
  } else {
    raw_added_.add(token);
  }
}

void Tokenizer::build_id_table(const std::string& file) {
  // Ids are nearly dense in real files (gpt-4o's leave a few gaps); bounding them by the number of
  // tokens plus a margin keeps a hostile file from sizing the id table.
  const auto max_ids = static_cast<int64_t>(model_->vocab().size() + added_.size()) + (1 << 16);
  auto check = [&](int32_t id) {
    if (id < 0 || id >= max_ids) fail("{}: token id {} is out of range for {} tokens", file, id, max_ids);
  };
  auto place = [&](int32_t id, const std::string& token) {
    check(id);
    if (static_cast<size_t>(id) >= id_to_token_.size()) id_to_token_.resize(static_cast<size_t>(id) + 1);
    id_to_token_[static_cast<size_t>(id)] = token;
  };
  model_->vocab().for_each([&](std::string_view token, int32_t id) { place(id, std::string(token)); });
  for (const auto& t : added_) place(t.id, t.content);
  special_.assign(id_to_token_.size(), false);
  for (const auto& t : added_) special_[static_cast<size_t>(t.id)] = t.special;
  for (int32_t id : prefix_) check(id);
  for (int32_t id : suffix_) check(id);
}

void Tokenizer::encode_ordinary(std::string_view text, bool at_text_start, std::vector<int32_t>& out) const {
  std::string plain = strip_literal_marks(std::string(text));
  if (plain.empty()) return;
  std::vector<std::string> pieces{std::move(plain)};
  if (pre_tokenizer_) pre_tokenizer_->split(pieces, at_text_start);
  for (const auto& piece : pieces) model_->encode(piece, out);
}

// A segment between raw-matched added tokens: normalized, then split on the normalized ones.
void Tokenizer::encode_segment(std::string_view text, bool at_text_start, bool parse_special,
                               std::vector<int32_t>& out) const {
  if (!normalizer_) return encode_ordinary(text, at_text_start, out);
  const std::string normalized = normalizer_->normalize(std::string(text));
  for (const Segment& s : normalized_added_.split(normalized, parse_special)) {
    if (s.token >= 0) {
      out.push_back(s.token);
    } else {
      encode_ordinary(s.text, at_text_start && s.offset == 0, out);
    }
  }
}

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool add_special, bool parse_special) const {
  std::vector<int32_t> ids;
  if (add_special) ids = prefix_;
  for (const Segment& s : raw_added_.split(text, parse_special)) {
    if (s.token >= 0) {
      ids.push_back(s.token);
    } else {
      encode_segment(s.text, s.offset == 0, parse_special, ids);
    }
  }
  if (add_special) ids.insert(ids.end(), suffix_.begin(), suffix_.end());
  return ids;
}

std::string Tokenizer::protect_special_text(std::string_view text) const {
  std::string out;
  for (const Segment& s : special_text_.split(text, /*match_special=*/true)) {
    if (s.token < 0) {
      out += s.text;
      continue;
    }
    for (size_t pos = 0; pos < s.text.size();) {  // a mark after every character: no part of it matches
      const size_t start = pos;
      next_code_point(s.text, pos);
      out += s.text.substr(start, pos - start);
      if (pos < s.text.size()) out += kLiteralMark;
    }
  }
  return out;
}

std::string Tokenizer::strip_literal_marks(std::string text) {
  for (size_t mark = text.find(kLiteralMark); mark != std::string::npos; mark = text.find(kLiteralMark, mark)) {
    text.erase(mark, kLiteralMark.size());
  }
  return text;
}

bool Tokenizer::is_special(int32_t id) const {
  return id >= 0 && static_cast<size_t>(id) < special_.size() && special_[static_cast<size_t>(id)];
}

std::optional<int32_t> Tokenizer::token_id(std::string_view token) const {
  for (const auto& t : added_) {
    if (t.content == token) return t.id;
  }
  return model_->vocab().find(token);
}

std::string Tokenizer::token_bytes(int32_t id, bool skip_special) const {
  if (id < 0 || id >= vocab_size()) fail("token id {} is outside the vocabulary of {} tokens", id, vocab_size());
  if (skip_special && is_special(id)) return {};
  const std::string& token = id_to_token_[static_cast<size_t>(id)];
  return decoder_ ? decoder_->token_bytes(token) : token;
}

std::string Tokenizer::decode(const std::vector<int32_t>& ids, bool skip_special) const {
  std::vector<std::string> tokens;
  tokens.reserve(ids.size());
  for (int32_t id : ids) {
    if (id < 0 || id >= vocab_size()) fail("token id {} is outside the vocabulary of {} tokens", id, vocab_size());
    if (!(skip_special && is_special(id))) tokens.push_back(id_to_token_[static_cast<size_t>(id)]);
  }
  std::string out;
  if (decoder_) {
    decoder_->decode_chain(tokens);
    for (const auto& t : tokens) out += t;
  } else {  // Hugging Face joins undecoded tokens with spaces
    for (size_t i = 0; i < tokens.size(); ++i) out += (i ? " " : "") + tokens[i];
  }
  return out;
}

}  // namespace nanoserve
