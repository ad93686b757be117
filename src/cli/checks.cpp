#include "cli/checks.h"

#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <functional>

namespace nanoserve::cli {

namespace {

// A validator from a test on the number; `expected` completes "X is not ...".
CLI::Validator number_check(std::function<bool(double)> ok, std::string expected) {
  return CLI::Validator(
      [ok = std::move(ok), expected](std::string& text) -> std::string {
        double value = 0;
        const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
        if (error != std::errc() || end != text.data() + text.size() || !std::isfinite(value)) {
          return fmt::format("{} is not a number", text);
        }
        return ok(value) ? std::string() : fmt::format("{} is not {}", text, expected);
      },
      "");  // nothing beside the type in --help: the failure says what is expected
}

size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diagonal = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t above = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diagonal = above;
    }
  }
  return row[b.size()];
}

}  // namespace

CLI::Validator positive() {
  return number_check([](double v) { return v > 0; }, "a positive number");
}

CLI::Validator non_negative() {
  return number_check([](double v) { return v >= 0; }, "a number >= 0");
}

CLI::Validator between(double low, double high) {
  return number_check([low, high](double v) { return v >= low && v <= high; }, fmt::format("in [{}, {}]", low, high));
}

std::string nearest(const std::string& word, const std::vector<std::string>& candidates) {
  std::string best;
  size_t best_distance = SIZE_MAX;
  for (const auto& c : candidates) {
    const size_t d = edit_distance(word, c);
    if (d < best_distance) {
      best = c;
      best_distance = d;
    }
  }
  return best_distance <= std::max<size_t>(1, word.size() / 3) ? best : std::string();
}

}  // namespace nanoserve::cli
