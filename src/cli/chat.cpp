// nanoserve chat: an interactive conversation in the terminal, rendered with the model's chat
// template. One engine serves every turn, so earlier turns come from the prefix cache.
#include <fmt/format.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>

#include <chrono>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>

#include "cli/commands.h"
#include "cli/common.h"
#include "cli/line_reader.h"
#include "cli/sampling_options.h"
#include "tokenizer/chat_prompt.h"
#include "util/error.h"
#include "util/json_parse.h"

namespace nanoserve::cli {

namespace {

struct ChatOptions {
  ModelOptions model;
  std::string system;
  SamplingParams sampling{.temperature = 0.8f, .top_p = 0.95f, .max_tokens = 256};
  EngineOptions engine;
  KvPoolOptions kv_pool;
};

std::string trim(const std::string& s) {
  const size_t begin = s.find_first_not_of(" \t\r\n");
  return begin == std::string::npos ? "" : s.substr(begin, s.find_last_not_of(" \t\r\n") - begin + 1);
}

using Json = nlohmann::ordered_json;

// Ctrl-C during a reply stops the reply; at the prompt (a read, which the signal interrupts) it
// clears the line, and a second one ends the chat, as Ctrl-D does.
std::atomic<bool> interrupted{false};
extern "C" void on_interrupt(int) {
  interrupted = true;
  LineReader::interrupt();
}

void catch_interrupts() {
  struct sigaction action {};
  action.sa_handler = on_interrupt;
  sigemptyset(&action.sa_mask);
  action.sa_flags = 0;  // no SA_RESTART: a read at the prompt returns, and the loop ends
  sigaction(SIGINT, &action, nullptr);
}

bool has_system(const Json& messages) { return !messages.empty() && messages[0]["role"] == "system"; }

// The prompt of the conversation as it fits the context: the oldest turns after the system prompt
// are dropped (said on stderr) until the reply has room for --max-tokens, or a quarter of the
// context if that is less, and it gets all the room left up to --max-tokens. Throws Error when the
// newest message alone leaves no room.
struct FittedPrompt {
  std::vector<int32_t> ids;
  int32_t max_tokens = 0;
};

FittedPrompt fit_context(const ChatTemplate& chat_template, const Tokenizer& tokenizer, Json& messages, int64_t context,
                         int32_t max_tokens) {
  const size_t first = has_system(messages) ? 1 : 0;
  const int64_t wanted = std::min<int64_t>(max_tokens, context / 4);
  size_t dropped = 0;
  for (;;) {
    auto ids = encode_chat(chat_template, tokenizer, {{"messages", messages}, {"add_generation_prompt", true}}).ids;
    const auto length = static_cast<int64_t>(ids.size());
    const bool only_the_newest = messages.size() <= first + 1;
    if (length + wanted <= context || (only_the_newest && length < context)) {
      if (dropped > 0) fmt::print(stderr, "[the context is full: the oldest {} messages were left out]\n", dropped);
      return {std::move(ids), static_cast<int32_t>(std::min<int64_t>(max_tokens, context - length))};
    }
    if (only_the_newest)
      fail("this message is {} tokens, more than the context of {} leaves room for", length, context - 1);
    messages.erase(messages.begin() + static_cast<std::ptrdiff_t>(first));
    ++dropped;
  }
}

// One assistant turn: fits the conversation in the context, streams the reply, returns it.
std::string reply(Engine& engine, const Tokenizer& tokenizer, const ChatTemplate& chat_template, Json& messages,
                  SamplingParams sampling, int64_t context) {
  const FittedPrompt prompt = fit_context(chat_template, tokenizer, messages, context, sampling.max_tokens);
  sampling.max_tokens = prompt.max_tokens;
  const auto start = std::chrono::steady_clock::now();
  std::string text, error;
  int64_t cached = 0, generated = 0;
  bool stopped = false;
  interrupted = false;
  uint64_t id = 0;
  id = engine.submit({prompt.ids, sampling}, [&](const Event& e) {
    if (interrupted.exchange(false)) {
      engine.cancel(id);  // ends within a step; what was said so far stays in the conversation
      stopped = true;
    }
    fmt::print("{}", e.text);
    std::fflush(stdout);
    text += e.text;
    generated += static_cast<int64_t>(e.tokens.size());
    if (e.finish) cached = e.cached_prompt_tokens;
    if (e.finish == FinishReason::Error) error = e.error;
  });
  engine.run_until_idle();
  fmt::print("\n");
  if (!error.empty()) fail("{}", error);
  if (stopped) fmt::print(stderr, "[stopped]\n");
  const double seconds = seconds_since(start);
  fmt::print(stderr, "[prompt {} tokens, {} from cache | {} tokens in {:.2f}s, {:.1f} tok/s]\n", prompt.ids.size(),
             cached, generated, seconds, static_cast<double>(generated) / std::max(seconds, 1e-9));
  return text;
}

constexpr const char* kHelp =
    "/help            this list\n"
    "/reset           start over (the system prompt stays)\n"
    "/system [TEXT]   set the system prompt (none without TEXT)\n"
    "/save FILE       write the conversation as JSON ({\"messages\": [...]})\n"
    "/load FILE       continue a conversation saved with /save\n"
    "/stats           tokens computed and generated, KV blocks, prefix-cache hits\n"
    "/exit, /quit     end the chat (Ctrl-D too; Ctrl-C during a reply stops the reply)\n";

// {"messages": [...]} or a bare list, as /save writes it and as the OpenAI API sends it.
Json read_conversation(const std::string& path) {
  const auto file = read_json_file(path);
  const auto& list = file.is_object() && file.contains("messages") ? file["messages"] : file;
  if (!list.is_array()) fail("{}: expected {{\"messages\": [...]}} or a list of messages", path);
  Json messages = Json::array();
  for (size_t i = 0; i < list.size(); ++i) {
    const auto& m = list[i];
    static const std::set<std::string> roles{"system", "user", "assistant"};
    if (!m.is_object() || !m.contains("role") || !m["role"].is_string() || !roles.count(m["role"].get<std::string>()) ||
        !m.contains("content") || !m["content"].is_string()) {
      fail("{}: message {} needs a role (system, user or assistant) and a string content", path, i);
    }
    messages.push_back({{"role", m["role"]}, {"content", m["content"]}});
  }
  return messages;
}

void print_stats(const Engine& engine) {
  const EngineStats s = engine.stats();
  fmt::print(stderr,
             "prompt tokens computed {}, generated {} | KV blocks {} of {} in use | prefix cache {} of {} blocks hit\n",
             s.prompt_tokens_computed, s.generated_tokens, s.used_blocks, s.total_blocks, s.prefix_hits,
             s.prefix_queries);
}

// A line that starts with '/': runs it. Returns false when the chat should end.
bool run_command(const std::string& line, Json& messages, const Engine& engine) {
  const size_t space = line.find(' ');
  const std::string command = line.substr(0, space),
                    argument = space == std::string::npos ? "" : trim(line.substr(space));
  if (command == "/exit" || command == "/quit") return false;
  if (command == "/help") {
    fmt::print(stderr, "{}", kHelp);
  } else if (command == "/reset") {
    messages.erase(messages.begin() + (has_system(messages) ? 1 : 0), messages.end());
  } else if (command == "/system") {
    if (has_system(messages)) messages.erase(messages.begin());
    if (!argument.empty()) messages.insert(messages.begin(), Json{{"role", "system"}, {"content", argument}});
    fmt::print(stderr, "[{}]\n", argument.empty() ? "no system prompt" : "system prompt set");
  } else if (command == "/save" && !argument.empty()) {
    std::ofstream out(argument);
    out << Json{{"messages", messages}}.dump(2) << "\n";
    if (!out.flush()) fail("{}: cannot write", argument);
    fmt::print(stderr, "[saved {} messages to {}]\n", messages.size(), argument);
  } else if (command == "/load" && !argument.empty()) {
    messages = read_conversation(argument);
    fmt::print(stderr, "[loaded {} messages from {}]\n", messages.size(), argument);
  } else if (command == "/stats") {
    print_stats(engine);
  } else {
    fmt::print(stderr, "{}: unknown command, or missing its FILE (/help lists them)\n", command);
  }
  return true;
}

void run_chat(const ChatOptions& opt) {
  check_sampling(opt.sampling);
  const ChatTemplate chat_template = require_chat_template(opt.model);  // before the weights: a missing one fails fast
  Model model = load(opt.model);
  Tokenizer tokenizer = load_tokenizer(opt.model);
  add_end_of_turn_ids(model, tokenizer, &chat_template);
  const auto ranks = open_ranks(opt.model, model);
  const EngineOptions engine_opts = engine_options(opt.engine, opt.kv_pool, model.config, *ranks);
  Engine engine(*ranks, &tokenizer, engine_opts);
  // What one sequence may hold: the model's context, or less when the KV pool is smaller.
  const int64_t context = std::min(engine.max_model_len(), engine.stats().total_blocks * engine_opts.block_size);
  Json messages = opt.system.empty() ? Json::array() : Json::array({{{"role", "system"}, {"content", opt.system}}});
  const bool interactive = ::isatty(STDIN_FILENO) == 1;
  if (interactive) {
    fmt::print(stderr,
               "Chatting with {}. /help lists the commands; a line ending in \\ continues; Ctrl-C stops a reply; "
               "Ctrl-D quits.\n",
               model_dir(opt.model));
  }
  LineReader reader(interactive, interactive ? default_history_path() : "");
  catch_interrupts();
  bool interrupted_at_prompt = false;
  std::string line;
  while (true) {
    if (interactive && !reader.terminal()) fmt::print(stderr, "> ");
    const LineReader::Status status = reader.read(line);
    if (status == LineReader::Status::End) {
      if (interactive) fmt::print(stderr, "\n");  // the shell's prompt starts on its own line
      break;
    }
    if (status == LineReader::Status::Interrupted) {
      if (!interactive) break;
      fmt::print(stderr, "\n");
      if (interrupted_at_prompt) break;
      interrupted_at_prompt = true;
      fmt::print(stderr, "[Ctrl-C again or Ctrl-D to quit]\n");
      continue;
    }
    interrupted_at_prompt = false;
    line = trim(line);
    if (line.empty()) continue;
    if (line[0] == '/') {
      try {
        if (!run_command(line, messages, engine)) break;
      } catch (const Error& e) {
        fmt::print(stderr, "error: {}\n", e.what());
      }
      continue;
    }
    messages.push_back({{"role", "user"}, {"content", line}});
    try {
      std::string text = reply(engine, tokenizer, chat_template, messages, opt.sampling, context);
      messages.push_back({{"role", "assistant"}, {"content", std::move(text)}});
    } catch (const Error& e) {  // the turn fails, the conversation goes on without it
      fmt::print(stderr, "error: {}\n", e.what());
      messages.erase(messages.end() - 1);
    }
    LineReader::forget_interrupt();  // a Ctrl-C during the reply stopped it; the prompt starts afresh
  }
}

}  // namespace

void register_chat(CLI::App& app) {
  auto opt = std::make_shared<ChatOptions>();
  CLI::App* cmd = app.add_subcommand("chat", "Chat in the terminal using the model's chat template");
  add_model_options(*cmd, opt->model);
  add_parallel_option(*cmd, opt->model);
  add_chat_template_option(*cmd, opt->model);
  cmd->add_option("--system", opt->system, "system prompt");
  add_sampling_options(*cmd, opt->sampling);
  add_engine_options(*cmd, opt->engine, opt->kv_pool);
  cmd->callback([opt] { run_chat(*opt); });
}

}  // namespace nanoserve::cli
