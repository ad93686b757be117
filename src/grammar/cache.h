// Compiled grammars shared across requests: the same schema sent again (every request of an agent
// loop carries the same tools) compiles once. Bounded, least recently used first out.
#pragma once

#include <cstddef>
#include <functional>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <utility>

#include "grammar/grammar.h"

namespace nanoserve::grammar {

class GrammarCache {
 public:
  explicit GrammarCache(size_t capacity = 256) : capacity_(capacity) {}

  // The grammar cached under `key`, or build()'s result, kept. What build() throws is not cached.
  std::shared_ptr<const Grammar> get(const std::string& key, const std::function<Grammar()>& build);

  size_t size() const;
  size_t hits() const;

 private:
  using Entry = std::pair<std::string, std::shared_ptr<const Grammar>>;
  size_t capacity_;
  mutable std::mutex mutex_;
  std::list<Entry> order_;  // most recent first
  std::unordered_map<std::string, std::list<Entry>::iterator> index_;
  size_t hits_ = 0;
};

}  // namespace nanoserve::grammar
