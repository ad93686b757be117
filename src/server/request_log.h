// One log line per answered request: method, path, status, tokens in and out, time to first token
// and duration, as text or JSON (util/log.h). Health probes and metric scrapes that succeed are
// logged at debug: they arrive every few seconds and would bury the rest.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

namespace nanoserve::server {

// What a generation call used.
struct CallUsage {
  int64_t prompt_tokens = 0, cached_tokens = 0, completion_tokens = 0;
  std::optional<double> ttft_seconds;  // none when no token was generated
};

void log_request(std::string_view method, std::string_view target, int status, double seconds,
                 const std::optional<CallUsage>& usage);

}  // namespace nanoserve::server
