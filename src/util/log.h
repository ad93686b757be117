// The program's log on stderr: plain lines a person reads, or one JSON object per line for a log
// collector (--log-format json), below a level (--log-level). Lines from different threads never
// interleave. Interactive output (the chat's replies, a generated text) is not logged: it is the
// command's output.
#pragma once

#include <fmt/format.h>

#include <nlohmann/json.hpp>
#include <optional>
#include <string_view>

namespace nanoserve::log {

enum class Level { Debug, Info, Warning, Error };
enum class Format { Text, Json };

void configure(Level level, Format format);
std::optional<Level> parse_level(std::string_view name);  // debug, info, warning, error
bool enabled(Level level);

// One line. Text: the message (prefixed "warning: " or "error: " at those levels), fields left out
// (callers put what matters in the message). JSON: {"time", "level", "msg", ...fields}.
void write(Level level, std::string_view message,
           const nlohmann::ordered_json& fields = nlohmann::ordered_json::object());

template <typename... Args>
void info(fmt::format_string<Args...> format, Args&&... args) {
  if (enabled(Level::Info)) write(Level::Info, fmt::format(format, std::forward<Args>(args)...));
}
template <typename... Args>
void warning(fmt::format_string<Args...> format, Args&&... args) {
  if (enabled(Level::Warning)) write(Level::Warning, fmt::format(format, std::forward<Args>(args)...));
}
template <typename... Args>
void error(fmt::format_string<Args...> format, Args&&... args) {
  if (enabled(Level::Error)) write(Level::Error, fmt::format(format, std::forward<Args>(args)...));
}

}  // namespace nanoserve::log
