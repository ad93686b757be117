// Stop strings over streamed text: a stop string may be split across tokens. Text is held back
// only while its end could still be the start of a stop string, and a stop string is never emitted.
#pragma once

#include <string>
#include <vector>

namespace nanoserve {

class StopMatcher {
 public:
  explicit StopMatcher(std::vector<std::string> stops) : stops_(std::move(stops)) {}

  // Adds text; returns the part that is now safe to emit. Sets stopped() when a stop string appears
  // (the returned text then ends right before it).
  std::string push(const std::string& text);
  // At the end of generation: whatever was held back.
  std::string flush();
  bool stopped() const { return stopped_; }

 private:
  std::vector<std::string> stops_;
  std::string held_;  // text not yet emitted
  bool stopped_ = false;
};

}  // namespace nanoserve
