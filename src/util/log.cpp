#include "util/log.h"

#include <atomic>
#include <chrono>
#include <cstdio>
#include <mutex>

namespace nanoserve::log {

namespace {

std::atomic<Level> g_level{Level::Info};
std::atomic<Format> g_format{Format::Text};
std::mutex g_write;

constexpr std::string_view kLevelNames[] = {"debug", "info", "warning", "error"};

std::string_view name_of(Level level) { return kLevelNames[static_cast<int>(level)]; }

// RFC 3339 in UTC with milliseconds, as log collectors parse it.
std::string utc_now() {
  const auto now = std::chrono::system_clock::now();
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count() % 1000;
  const std::time_t seconds = std::chrono::system_clock::to_time_t(now);
  std::tm tm{};
  gmtime_r(&seconds, &tm);
  return fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                     tm.tm_hour, tm.tm_min, tm.tm_sec, ms);
}

}  // namespace

void configure(Level level, Format format) {
  g_level = level;
  g_format = format;
}

std::optional<Level> parse_level(std::string_view name) {
  for (size_t i = 0; i < std::size(kLevelNames); ++i) {
    if (name == kLevelNames[i]) return static_cast<Level>(i);
  }
  return std::nullopt;
}

bool enabled(Level level) { return level >= g_level.load(std::memory_order_relaxed); }

void write(Level level, std::string_view message, const nlohmann::ordered_json& fields) {
  if (!enabled(level)) return;
  std::string line;
  if (g_format == Format::Json) {
    nlohmann::ordered_json j = {{"time", utc_now()}, {"level", name_of(level)}, {"msg", message}};
    for (const auto& [key, value] : fields.items()) j[key] = value;
    // Text from clients (a path) may not be UTF-8; it is logged with U+FFFD rather than lost.
    line = j.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
  } else {
    line = level >= Level::Warning ? fmt::format("{}: {}", name_of(level), message) : std::string(message);
  }
  line += '\n';
  const std::lock_guard lock(g_write);
  std::fwrite(line.data(), 1, line.size(), stderr);
}

}  // namespace nanoserve::log
