// Responses kept in memory for GET /v1/responses/{id} and previous_response_id: each response
// object with the conversation it ended (chat messages), the most recently used kept, within a
// count and a byte budget. Nothing survives a restart. Thread-safe: calls are prepared on the pool.
#pragma once

#include <cstdint>
#include <list>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <unordered_map>

namespace nanoserve::server {

class ResponseStore {
 public:
  static constexpr size_t kMaxResponses = 1000;
  static constexpr size_t kMaxBytes = 64ull << 20;

  struct Stored {
    nlohmann::ordered_json response;      // the Responses object, as returned
    nlohmann::ordered_json conversation;  // its input and output as chat messages
  };

  explicit ResponseStore(size_t max_responses = kMaxResponses, size_t max_bytes = kMaxBytes)
      : max_responses_(max_responses), max_bytes_(max_bytes) {}

  void put(const std::string& id, Stored stored);  // a response larger than the budget is not kept
  std::optional<Stored> get(const std::string& id);
  bool erase(const std::string& id);

 private:
  struct Entry {
    std::string id;
    Stored stored;
    size_t bytes;
  };
  void evict_while_over();

  std::mutex mutex_;
  std::list<Entry> entries_;  // most recently used first
  std::unordered_map<std::string, std::list<Entry>::iterator> by_id_;
  size_t bytes_ = 0;
  size_t max_responses_, max_bytes_;
};

}  // namespace nanoserve::server
