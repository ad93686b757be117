// Trie walks of local states (see automaton.h), shared by every grammar over one vocabulary: a
// JSON string's body is the same few rules in every schema, and its walk, which visits most of the
// vocabulary, is done once per tokenizer instead of once per schema. Keyed by the local state's
// structure (rules renumbered in the order they are reached), so equal keys walk alike.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

namespace nanoserve::grammar {

struct LocalWalk {
  std::vector<uint64_t> allowed;  // bit per token id: taken without leaving the local part
  std::vector<int32_t> exits;     // ranks of the tokens some parse leaves the local part within
  size_t bytes() const { return allowed.size() * 8 + exits.size() * 4; }
};

class WalkCache {
 public:
  std::shared_ptr<const LocalWalk> find(const std::string& key) const;
  // Past kMaxBytes, everything kept so far is dropped (walks in use stay alive with their users).
  void keep(const std::string& key, std::shared_ptr<const LocalWalk> walk);

  static constexpr size_t kMaxBytes = 128ull << 20;

 private:
  mutable std::mutex mutex_;
  std::unordered_map<std::string, std::shared_ptr<const LocalWalk>> walks_;
  size_t bytes_ = 0;
};

}  // namespace nanoserve::grammar
