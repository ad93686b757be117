// A chat template from a stranger's tokenizer_config.json: parse and render with a conversation.
#include <cstdint>
#include <nlohmann/json.hpp>

#include "tokenizer/chat_template.h"
#include "util/error.h"

// A fortieth of a server's budget: a template that runs to the end of it takes ~0.25 s under the
// sanitizers instead of ~10 s, so the fuzzer tries inputs instead of waiting on loops.
constexpr uint64_t kFuzzWork = nanoserve::ChatTemplate::kMaxWork / 40;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const nlohmann::ordered_json context = {
      {"messages",
       {{{"role", "system"}, {"content", "Be brief."}},
        {{"role", "user"}, {"content", "Hi <|eot_id|>"}},
        {{"role", "assistant"}, {"content", "Hello."}, {"tool_calls", nlohmann::ordered_json::array()}}}},
      {"add_generation_prompt", true},
      {"tools",
       {{{"type", "function"}, {"function", {{"name", "f"}, {"parameters", nlohmann::ordered_json::object()}}}}}}};
  try {
    nanoserve::ChatTemplate t(std::string(reinterpret_cast<const char*>(data), size));
    t.render(context, kFuzzWork);
  } catch (const nanoserve::Error&) {}
  return 0;
}
