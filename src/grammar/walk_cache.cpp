#include "grammar/walk_cache.h"

namespace nanoserve::grammar {

std::shared_ptr<const LocalWalk> WalkCache::find(const std::string& key) const {
  std::lock_guard lock(mutex_);
  auto it = walks_.find(key);
  return it == walks_.end() ? nullptr : it->second;
}

void WalkCache::keep(const std::string& key, std::shared_ptr<const LocalWalk> walk) {
  const size_t bytes = walk->bytes() + key.size();
  std::lock_guard lock(mutex_);
  if (bytes_ + bytes > kMaxBytes) {
    walks_.clear();
    bytes_ = 0;
  }
  if (walks_.try_emplace(key, std::move(walk)).second) bytes_ += bytes;
}

}  // namespace nanoserve::grammar
