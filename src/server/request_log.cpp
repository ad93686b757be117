#include "server/request_log.h"

#include <fmt/format.h>

#include <cmath>
#include <string>

#include "util/log.h"

namespace nanoserve::server {

namespace {

// A client's path, fit for one log line: no query string (it may hold secrets), no control bytes
// (a forged second line), at most 200 bytes.
std::string loggable_path(std::string_view target) {
  target = target.substr(0, target.find('?'));
  std::string out;
  for (char c : target.substr(0, 200)) out += (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) ? '?' : c;
  if (target.size() > 200) out += "...";
  return out;
}

double tenths(double ms) { return std::round(ms * 10) / 10; }

log::Level level_of(std::string_view path, int status) {
  if (status >= 500) return log::Level::Warning;
  if ((path == "/health" || path == "/metrics") && status < 400) return log::Level::Debug;
  return log::Level::Info;
}

}  // namespace

void log_request(std::string_view method, std::string_view target, int status, double seconds,
                 const std::optional<CallUsage>& usage) {
  const std::string path = loggable_path(target);
  const log::Level level = level_of(path, status);
  if (!log::enabled(level)) return;
  nlohmann::ordered_json fields = {
      {"method", method}, {"path", path}, {"status", status}, {"duration_ms", tenths(seconds * 1e3)}};
  std::string text = fmt::format("{} {} {} in {:.1f} ms", method, path, status, seconds * 1e3);
  if (usage) {
    fields["prompt_tokens"] = usage->prompt_tokens;
    fields["cached_tokens"] = usage->cached_tokens;
    fields["completion_tokens"] = usage->completion_tokens;
    text += fmt::format(": {} prompt tokens ({} cached), {} generated", usage->prompt_tokens, usage->cached_tokens,
                        usage->completion_tokens);
    if (usage->ttft_seconds) {
      fields["ttft_ms"] = tenths(*usage->ttft_seconds * 1e3);
      text += fmt::format(", the first after {:.1f} ms", *usage->ttft_seconds * 1e3);
    }
  }
  log::write(level, text, fields);
}

}  // namespace nanoserve::server
