#include "tokenizer/decoder.h"

#include "tokenizer/byte_level.h"
#include "tokenizer/regex.h"
#include "util/error.h"
#include "util/utf8.h"

namespace nanoserve {

using json = nlohmann::json;

namespace {

std::string join(const std::vector<std::string>& tokens) {
  std::string out;
  for (const auto& t : tokens) out += t;
  return out;
}

// The byte a <0xNN> token stands for, or -1.
int byte_token(const std::string& token) {
  if (token.size() != 6 || token.compare(0, 3, "<0x") != 0 || token[5] != '>') return -1;
  int value = 0;
  for (char c : token.substr(3, 2)) {
    const int digit = c >= '0' && c <= '9'   ? c - '0'
                      : c >= 'A' && c <= 'F' ? c - 'A' + 10
                      : c >= 'a' && c <= 'f' ? c - 'a' + 10
                                             : -1;
    if (digit < 0) return -1;
    value = value * 16 + digit;
  }
  return value;
}

// All tokens' byte-level characters back to bytes, as one string.
class ByteLevel : public Decoder {
 public:
  void decode_chain(std::vector<std::string>& tokens) const override {
    tokens = {valid_utf8(byte_level_to_bytes(join(tokens)))};
  }
  std::string token_bytes(std::string token) const override { return byte_level_to_bytes(token); }
};

class Replace : public Decoder {
 public:
  explicit Replace(const json& j) : replacement_(j) {}
  void decode_chain(std::vector<std::string>& tokens) const override {
    for (auto& t : tokens) t = replacement_.apply(t);
  }
  std::string token_bytes(std::string token) const override { return replacement_.apply(token); }

 private:
  Replacement replacement_;
};

// Runs of <0xNN> tokens become the text they encode, or one U+FFFD per byte if that is not UTF-8.
class ByteFallback : public Decoder {
 public:
  void decode_chain(std::vector<std::string>& tokens) const override {
    std::vector<std::string> out;
    std::string bytes;
    auto flush = [&] {
      if (bytes.empty()) return;
      if (valid_utf8(bytes) == bytes) {
        out.push_back(bytes);
      } else {
        for (size_t i = 0; i < bytes.size(); ++i) out.emplace_back(kReplacementCharacter);
      }
      bytes.clear();
    };
    for (auto& t : tokens) {
      if (const int b = byte_token(t); b >= 0) {
        bytes += static_cast<char>(b);
      } else {
        flush();
        out.push_back(std::move(t));
      }
    }
    flush();
    tokens = std::move(out);
  }
  std::string token_bytes(std::string token) const override {
    const int b = byte_token(token);
    return b >= 0 ? std::string(1, static_cast<char>(b)) : token;
  }
};

class Fuse : public Decoder {
 public:
  void decode_chain(std::vector<std::string>& tokens) const override { tokens = {join(tokens)}; }
  std::string token_bytes(std::string token) const override { return token; }
};

// Removes up to `start` leading and `stop` trailing copies of a character from each token.
class Strip : public Decoder {
 public:
  explicit Strip(const json& j)
      : content_(j.at("content").get<std::string>()), start_(j.value("start", 0)), stop_(j.value("stop", 0)) {
    if (content_.empty()) fail("Strip decoder: content is empty");
  }
  void decode_chain(std::vector<std::string>& tokens) const override {
    for (auto& t : tokens) {
      size_t begin = 0, end = t.size();
      for (size_t n = 0; n < start_ && t.compare(begin, content_.size(), content_) == 0; ++n) begin += content_.size();
      for (size_t n = 0; n < stop_ && end >= begin + content_.size() &&
                         t.compare(end - content_.size(), content_.size(), content_) == 0;
           ++n) {
        end -= content_.size();
      }
      t = t.substr(begin, end - begin);
    }
  }
  std::string token_bytes(std::string token) const override { return token; }

 private:
  std::string content_;
  size_t start_, stop_;
};

// ▁ back to spaces; the first token loses its ▁ when the pre-tokenizer prepended one.
class Metaspace : public Decoder {
 public:
  explicit Metaspace(const json& j)
      : replacement_(j.value("replacement", std::string("\xE2\x96\x81"))),
        strip_first_(j.contains("prepend_scheme") ? j["prepend_scheme"] != "never" : j.value("add_prefix_space", true)),
        pattern_(std::make_unique<Regex>(replacement_, true)) {}
  void decode_chain(std::vector<std::string>& tokens) const override {
    for (size_t i = 0; i < tokens.size(); ++i) {
      tokens[i] = pattern_->replace_all(tokens[i], i == 0 && strip_first_ ? "" : " ");
    }
  }
  std::string token_bytes(std::string token) const override { return pattern_->replace_all(token, " "); }

 private:
  std::string replacement_;
  bool strip_first_;
  std::unique_ptr<Regex> pattern_;
};

class Sequence : public Decoder {
 public:
  explicit Sequence(const json& j) {
    for (const auto& child : j.at("decoders")) {
      if (auto step = make_decoder(child)) steps_.push_back(std::move(step));
    }
  }
  void decode_chain(std::vector<std::string>& tokens) const override {
    for (const auto& step : steps_) step->decode_chain(tokens);
  }
  std::string token_bytes(std::string token) const override {
    for (const auto& step : steps_) token = step->token_bytes(std::move(token));
    return token;
  }

 private:
  std::vector<std::unique_ptr<Decoder>> steps_;
};

}  // namespace

std::unique_ptr<Decoder> make_decoder(const json& j) {
  if (j.is_null()) return nullptr;
  const std::string type = j.at("type").get<std::string>();
  if (type == "ByteLevel") return std::make_unique<ByteLevel>();
  if (type == "Replace") return std::make_unique<Replace>(j);
  if (type == "ByteFallback") return std::make_unique<ByteFallback>();
  if (type == "Fuse") return std::make_unique<Fuse>();
  if (type == "Strip") return std::make_unique<Strip>(j);
  if (type == "Metaspace") return std::make_unique<Metaspace>(j);
  if (type == "Sequence") return std::make_unique<Sequence>(j);
  fail(
      "decoder type '{}' is not supported (supported: ByteLevel, Replace, ByteFallback, Fuse, Strip, Metaspace, "
      "Sequence)",
      type);
}

}  // namespace nanoserve
