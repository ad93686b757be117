#include "grammar/cache.h"

namespace nanoserve::grammar {

std::shared_ptr<const Grammar> GrammarCache::get(const std::string& key, const std::function<Grammar()>& build) {
  {
    std::lock_guard lock(mutex_);
    auto it = index_.find(key);
    if (it != index_.end()) {
      order_.splice(order_.begin(), order_, it->second);
      ++hits_;
      return it->second->second;
    }
  }
  auto grammar = std::make_shared<const Grammar>(build());  // outside the lock: compiling takes a while
  std::lock_guard lock(mutex_);
  if (index_.count(key)) return index_[key]->second;
  order_.emplace_front(key, grammar);
  index_[key] = order_.begin();
  if (order_.size() > capacity_) {
    index_.erase(order_.back().first);
    order_.pop_back();
  }
  return grammar;
}

size_t GrammarCache::size() const {
  std::lock_guard lock(mutex_);
  return order_.size();
}

size_t GrammarCache::hits() const {
  std::lock_guard lock(mutex_);
  return hits_;
}

}  // namespace nanoserve::grammar
