// An HTTP request body from a stranger, taken as far as the engine: JSON (the server's own bounded
// parse), the OpenAI request schema (completions, chat or responses, by the first byte), the demo
// model's chat template and tokenizer, and the sampling parameters' validation.
#include <cstdint>
#include <string_view>

#include "server/api_error.h"
#include "server/openai_request.h"
#include "server/responses_request.h"
#include "tokenizer/chat_prompt.h"
#include "tokenizer/tokenizer.h"
#include "util/error.h"

namespace {
struct Demo {
  nanoserve::Tokenizer tokenizer = nanoserve::Tokenizer::from_file(NANOSERVE_DEMO_DIR);
  nanoserve::ChatTemplate chat = *nanoserve::ChatTemplate::from_model(NANOSERVE_DEMO_DIR);
};
const Demo& demo() {
  static const Demo d;
  return d;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace nanoserve::server;
  if (size == 0) return 0;
  const bool responses = data[0] % 3 == 2;
  const auto kind = data[0] % 3 == 0 ? ApiKind::Completion : ApiKind::Chat;
  try {
    const auto body = parse_request_body(std::string_view(reinterpret_cast<const char*>(data + 1), size - 1));
    // A stored conversation for "resp_1", as previous_response_id finds it.
    const auto previous = [](const std::string& id) -> std::optional<nlohmann::ordered_json> {
      if (id != "resp_1") return std::nullopt;
      return nlohmann::ordered_json::array(
          {{{"role", "user"}, {"content", "Hi"}}, {{"role", "assistant"}, {"content", "Hello"}}});
    };
    GenerationRequest r =
        parse_generation_request(responses ? parse_responses_request(body, previous).chat : body, kind);
    r.params.validate(demo().tokenizer.vocab_size());
    if (kind == ApiKind::Chat) {
      nanoserve::encode_chat(demo().chat, demo().tokenizer, chat_template_context(r), r.parse_special_tokens);
    } else if (r.prompt.is_string()) {
      demo().tokenizer.encode(r.prompt.get<std::string>());
    }
  } catch (const ApiError&) {
  } catch (const nanoserve::Error&) {}
  return 0;
}
