#include "server/response_store.h"

namespace nanoserve::server {

void ResponseStore::put(const std::string& id, Stored stored) {
  const size_t bytes = id.size() + stored.response.dump().size() + stored.conversation.dump().size();
  if (bytes > max_bytes_) return;
  const std::lock_guard lock(mutex_);
  if (auto it = by_id_.find(id); it != by_id_.end()) {
    bytes_ -= it->second->bytes;
    entries_.erase(it->second);
  }
  entries_.push_front({id, std::move(stored), bytes});
  by_id_[id] = entries_.begin();
  bytes_ += bytes;
  evict_while_over();
}

std::optional<ResponseStore::Stored> ResponseStore::get(const std::string& id) {
  const std::lock_guard lock(mutex_);
  auto it = by_id_.find(id);
  if (it == by_id_.end()) return std::nullopt;
  entries_.splice(entries_.begin(), entries_, it->second);
  return it->second->stored;
}

bool ResponseStore::erase(const std::string& id) {
  const std::lock_guard lock(mutex_);
  auto it = by_id_.find(id);
  if (it == by_id_.end()) return false;
  bytes_ -= it->second->bytes;
  entries_.erase(it->second);
  by_id_.erase(it);
  return true;
}

void ResponseStore::evict_while_over() {
  while (entries_.size() > max_responses_ || bytes_ > max_bytes_) {
    bytes_ -= entries_.back().bytes;
    by_id_.erase(entries_.back().id);
    entries_.pop_back();
  }
}

}  // namespace nanoserve::server
