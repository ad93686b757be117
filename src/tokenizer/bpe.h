// The BPE model of tokenizer.json: a vocabulary and ranked merges. A piece starts as one symbol per
// character and the lowest-ranked adjacent pair is merged until no listed merge applies.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace nanoserve {

class BpeModel {
 public:
  explicit BpeModel(const nlohmann::json& model);  // tokenizer.json's "model" object

  // Appends the ids of one pre-tokenized piece. Throws Error for a character outside the vocabulary.
  void encode(std::string_view piece, std::vector<int32_t>& out) const;

  const std::unordered_map<std::string, int32_t>& vocab() const { return vocab_; }

 private:
  struct Merge {
    int32_t rank;
    int32_t merged;  // id of the merged token
  };
  static uint64_t pair_key(int32_t a, int32_t b) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
  }

  std::unordered_map<std::string, int32_t> vocab_;
  std::unordered_map<uint64_t, Merge> merges_;
  bool ignore_merges_ = false;  // a piece that is itself in the vocabulary is taken whole
};

}  // namespace nanoserve
