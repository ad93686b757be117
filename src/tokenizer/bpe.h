// The BPE model of tokenizer.json: a vocabulary and ranked merges. A piece starts as one symbol per
// character and the lowest-ranked adjacent pair is merged until no listed merge applies. A character
// outside the vocabulary becomes its bytes' <0xNN> tokens (byte_fallback, as SentencePiece models
// do) or the unknown token.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "tokenizer/merge_table.h"
#include "tokenizer/token_table.h"

namespace nanoserve {

class BpeModel {
 public:
  using Vocab = TokenTable;
  using MergePair = std::pair<std::string_view, std::string_view>;
  struct Options {
    bool ignore_merges = false;  // a piece that is itself in the vocabulary is taken whole
    bool byte_fallback = false;
    bool fuse_unk = false;  // consecutive unknown characters become one unknown token
    std::string unk_token;  // empty: an unknown character is an error
  };

  // merges: highest priority first. Throws Error for a merge or unk_token outside the vocabulary.
  BpeModel(Vocab vocab, std::span<const MergePair> merges, Options options);

  // Appends the ids of one pre-tokenized piece. Throws Error for a character outside the vocabulary.
  void encode(std::string_view piece, std::vector<int32_t>& out) const;

  const Vocab& vocab() const { return vocab_; }

 private:
  void add_symbols(std::string_view piece, std::vector<int32_t>& symbols) const;
  void encode_word(std::string_view word, std::vector<int32_t>& out) const;  // through the word cache
  void merge(std::string_view word, std::vector<int32_t>& out) const;
  void find_word_boundaries();

  Vocab vocab_;
  MergeTable merges_;
  Options options_;
  int32_t byte_ids_[256];  // <0xNN> token ids with byte_fallback, -1 where absent
  int32_t unk_id_ = -1;    // -1: no unknown token
  uint64_t instance_;      // tells this model's entries in a thread's word cache from another's
  // SentencePiece-style pieces hold whole sentences (▁ for spaces, no pre-tokenizer). When no token
  // joins a character to a following ▁ (found at load), no merge can cross such a place, so a piece
  // is cut there into words, each encoded once and then served from the cache.
  bool split_words_ = false;
  std::vector<char32_t> joins_metaspace_;  // characters some token has right before a ▁, sorted
};

}  // namespace nanoserve
