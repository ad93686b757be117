// nanoserve serve: the OpenAI-compatible HTTP server. One io thread handles every connection,
// the engine steps on its own thread; SIGTERM/SIGINT stop accepting, let requests in flight finish
// for a grace period, then end the rest with a final event and exit 0.
#include <fmt/format.h>
#include <sys/resource.h>

#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <filesystem>

#include "cli/checks.h"
#include "cli/commands.h"
#include "cli/common.h"
#include "cli/sampling_options.h"
#include "server/api.h"
#include "server/http_server.h"
#include "util/error.h"
#include "util/log.h"

namespace nanoserve::cli {

namespace {

struct ServeOptions {
  ModelOptions model;
  std::string host = "127.0.0.1";
  int port = 8080;
  std::string api_key;
  std::string tool_call_parser;  // empty: detect from the chat template
  std::string reasoning_parser;  // empty: none
  std::string served_model_name;
  std::string task = "auto";  // auto: embed when the model has a pooling config (modules.json)
  std::string pooling;        // overrides the model's pooling; empty: the model's, or last
  EngineOptions engine;
  KvPoolOptions kv_pool;
  int64_t max_queued = 1024;
  int64_t max_sequences_per_request = 256;
  uint64_t max_body_bytes = 8ull << 20;
  size_t max_connections = 4096;
  uint64_t max_buffered_bytes = 256ull << 20;
  double shutdown_grace = 30;
  double request_timeout = 30;
  std::vector<std::string> allowed_origins;  // CORS; empty: none
  std::string log_level = "info";
  std::string log_format = "text";
};

// Each connection is a file descriptor: allow as many as the hard limit permits.
void raise_open_files_limit() {
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur < limit.rlim_max) {
    limit.rlim_cur = limit.rlim_max;
    setrlimit(RLIMIT_NOFILE, &limit);
  }
}

std::string default_model_name(const ServeOptions& opt) {
  if (!opt.served_model_name.empty()) return opt.served_model_name;
  if (opt.model.model_dir.empty()) return "demo";
  return std::filesystem::path(opt.model.model_dir).filename().string().empty()
             ? std::filesystem::path(opt.model.model_dir).parent_path().filename().string()
             : opt.model.model_dir;
}

// Shutdown on SIGTERM, SIGINT or SIGHUP (a closed terminal): stop accepting, wait for requests in
// flight until the grace period ends, then cancel them (their streams end with finish_reason
// "abort"). Once none is left, nothing keeps the io loop alive but connections closing, and
// io.run() returns. A second signal ends the grace period at once.
class Shutdown {
 public:
  Shutdown(boost::asio::io_context& io, server::HttpServer& http, server::Api& api, Engine& engine, double grace)
      : signals_(io, SIGTERM, SIGINT, SIGHUP), timer_(io), http_(http), api_(api), engine_(engine), grace_(grace) {
    wait_for_signal();
  }

 private:
  void wait_for_signal() {
    signals_.async_wait([this](boost::system::error_code ec, int) {
      if (ec) return;
      begin();
      if (!done_) wait_for_signal();
    });
  }

  void begin() {
    if (started_) {
      engine_.cancel_all();
      return;
    }
    started_ = true;
    deadline_ = std::chrono::steady_clock::now() +
                std::chrono::duration_cast<std::chrono::steady_clock::duration>(std::chrono::duration<double>(grace_));
    log::info("shutting down: {} requests in flight, {:.0f}s grace", api_.in_flight(), grace_);
    http_.stop_accepting();
    api_.drain();
    poll();
  }

  void poll() {
    http_.close_idle();
    if (api_.in_flight() == 0) {
      done_ = true;
      signals_.cancel();
      return;
    }
    if (!cancelled_ && std::chrono::steady_clock::now() >= deadline_) {
      log::info("grace period over: ending {} requests", api_.in_flight());
      engine_.cancel_all();
      cancelled_ = true;
    }
    timer_.expires_after(std::chrono::milliseconds(50));
    timer_.async_wait([this](boost::system::error_code) { poll(); });
  }

  boost::asio::signal_set signals_;
  boost::asio::steady_timer timer_;
  server::HttpServer& http_;
  server::Api& api_;
  Engine& engine_;
  double grace_;
  std::chrono::steady_clock::time_point deadline_;
  bool started_ = false, cancelled_ = false, done_ = false;
};

// Handlers catch what they expect; whatever escapes one (out of memory in a connection's buffers)
// is logged and the loop goes on, rather than unwinding the server with connections still open.
void run_io(boost::asio::io_context& io) {
  for (;;) {
    try {
      io.run();
      return;
    } catch (const std::exception& e) {
      log::error("a connection handler failed, serving on: {}", e.what());
    }
  }
}

// --host as an address, or a name ("localhost") resolved before the model loads.
std::string listen_address(const std::string& host) {
  boost::system::error_code ec;
  boost::asio::ip::make_address(host, ec);
  if (!ec) return host;
  boost::asio::io_context io;
  boost::asio::ip::tcp::resolver resolver(io);
  const auto results = resolver.resolve(host, "", ec);
  if (ec || results.empty())
    fail("--host {}: neither an IP address nor a name this machine resolves ({})", host, ec.message());
  return results.begin()->endpoint().address().to_string();
}

// --task and --pooling against the model: the pooling an embedding server uses, or none to generate.
std::optional<Pooling> embedding_task(const ServeOptions& opt, const Model& model) {
  const bool embed = opt.task == "embed" || (opt.task == "auto" && model.pooling);
  if (!embed) {
    if (!opt.pooling.empty()) fail("--pooling {}: pooling is for --task embed", opt.pooling);
    if (!model.config.has_lm_head)
      fail("this model has no LM head (an embedding model's weights): serve it with --task embed");
    return std::nullopt;
  }
  Pooling pooling = model.pooling.value_or(Pooling{});  // none given: last token, normalized, as vLLM pools decoders
  if (!opt.pooling.empty()) pooling.mode = *pooling_mode_named(opt.pooling);
  log::info("serving embeddings: {}{} pooling{}", pooling_mode_name(pooling.mode),
            pooling.mode == PoolingMode::Last ? "-token" : "", pooling.normalize ? ", normalized" : "");
  return pooling;
}

void run_serve(const ServeOptions& opt) {
  const auto start = std::chrono::steady_clock::now();
  log::configure(*log::parse_level(opt.log_level), opt.log_format == "json" ? log::Format::Json : log::Format::Text);
  const std::string address = listen_address(opt.host);
  raise_open_files_limit();
  Model model = load(opt.model);
  const std::optional<Pooling> embedding = embedding_task(opt, model);
  Tokenizer tokenizer = load_tokenizer(opt.model);
  std::optional<ChatTemplate> chat_template;
  try {
    chat_template = load_chat_template(opt.model);
  } catch (const Error& e) {
    log::warning("the chat template cannot be used, /v1/chat/completions will refuse requests: {}", e.what());
  }
  add_end_of_turn_ids(model, tokenizer, chat_template ? &*chat_template : nullptr);
  const auto ranks = open_ranks(opt.model, model);
  const EngineOptions engine_opts = engine_options(opt.engine, opt.kv_pool, model.config, *ranks);
  Engine engine(*ranks, &tokenizer, engine_opts);
  const EngineStats stats = engine.stats();

  boost::asio::io_context io;
  server::ApiOptions api_options{.model_name = default_model_name(opt),
                                 .api_key = opt.api_key,
                                 .max_queued = opt.max_queued,
                                 .max_sequences_per_request = opt.max_sequences_per_request,
                                 .kv_tokens = stats.total_blocks * engine_opts.block_size,
                                 .tool_call_parser = opt.tool_call_parser,
                                 .reasoning_parser = opt.reasoning_parser,
                                 .embedding = embedding};
  server::Api api(io, engine, tokenizer, chat_template ? &*chat_template : nullptr, api_options);
  server::HttpLimits limits;
  limits.max_body_bytes = opt.max_body_bytes;
  limits.max_connections = opt.max_connections;
  limits.max_buffered_bytes = std::max(opt.max_buffered_bytes, opt.max_body_bytes);
  limits.read_timeout =
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::duration<double>(opt.request_timeout));
  server::HttpServer http(
      io, address, static_cast<uint16_t>(opt.port), limits,
      [&api](std::shared_ptr<server::Exchange> e) { api.handle(e); },
      [&api](const server::http::request_header<>& header) { return api.admit(header); },
      server::CorsPolicy(opt.allowed_origins));
  Shutdown shutdown(io, http, api, engine, opt.shutdown_grace);
  engine.start();
  http.start();
  log::info("serving {} at http://{}:{} (OpenAI API under /v1, chat page at /){}; ready in {:.2f}s",
            api_options.model_name, address, http.port(), opt.api_key.empty() ? "" : ", API key required",
            seconds_since(start));
  run_io(io);
  engine.stop();
  log::info("stopped");
}

}  // namespace

void register_serve(CLI::App& app) {
  auto opt = std::make_shared<ServeOptions>();
  CLI::App* cmd = app.add_subcommand("serve", "Serve the OpenAI API (completions, chat, streaming) over HTTP");
  add_model_options(*cmd, opt->model);
  // vLLM's form, `serve MODEL`, names the model as -m does.
  cmd->add_option("MODEL", opt->model.model_dir, "the model, as -m takes it (vLLM's `vllm serve MODEL`)")
      ->excludes(cmd->get_option("-m"));
  add_parallel_option(*cmd, opt->model);
  add_chat_template_option(*cmd, opt->model);
  cmd->add_option("--host", opt->host, "address or name to listen on (default 127.0.0.1; 0.0.0.0 for every interface)");
  cmd->add_option("--port", opt->port, "port to listen on (default 8080; 0 picks a free one)")
      ->check(between(0, 65535));
  cmd->add_option("--api-key", opt->api_key, "require 'Authorization: Bearer KEY' on /v1 routes")
      ->envname("NANOSERVE_API_KEY");
  cmd->add_option("--reasoning-parser", opt->reasoning_parser,
                  "split a thinking model's <think>...</think> into reasoning_content: deepseek_r1 (the template opens "
                  "<think>) or qwen3 (a reply thinks only if it opens with <think>); default: none")
      ->check(CLI::IsMember({"deepseek_r1", "qwen3"}));
  cmd->add_option(
         "--tool-call-parser", opt->tool_call_parser,
         "how the model writes tool calls: hermes, llama3_json, mistral or generic (default: from the chat template)")
      ->check(CLI::IsMember({"hermes", "llama3_json", "mistral", "generic"}));
  cmd->add_option("--task", opt->task,
                  "generate, or embed: /v1/embeddings instead of the generation routes (default auto: embed when the "
                  "model directory has a sentence-transformers modules.json)")
      ->check(CLI::IsMember({"auto", "generate", "embed"}));
  cmd->add_option("--pooling", opt->pooling,
                  "with --task embed: last (token), mean or cls, in place of the model's pooling (default: the model's "
                  "modules.json, else last)")
      ->check(CLI::IsMember({"last", "mean", "cls"}));
  cmd->add_option("--served-model-name", opt->served_model_name,
                  "the model id clients name (default: the -m argument)");
  cmd->add_option("--max-queued", opt->max_queued,
                  "sequences in flight (prompts x n) beyond which new requests get 503 (default 1024)")
      ->check(positive());
  cmd->add_option("--max-body-bytes", opt->max_body_bytes,
                  "largest request body accepted; larger gets 413 (default 8 MiB)")
      ->check(positive());
  cmd->add_option("--max-sequences-per-request", opt->max_sequences_per_request,
                  "most sequences (prompts x n) one request may ask for; more gets 400 (default 256)")
      ->check(positive());
  cmd->add_option("--max-connections", opt->max_connections, "connections open at once; more get 503 (default 4096)")
      ->check(positive());
  cmd->add_option("--max-buffered-bytes", opt->max_buffered_bytes,
                  "request bodies held in memory at once; past it requests get 503 (default 256 MiB)")
      ->check(positive());
  cmd->add_option("--shutdown-grace", opt->shutdown_grace,
                  "seconds requests in flight may finish after SIGTERM (default 30)")
      ->check(non_negative());
  cmd->add_option("--request-timeout", opt->request_timeout,
                  "seconds a client has to send a whole request; slower ones are disconnected (default 30)")
      ->check(positive());
  cmd->add_option("--allowed-origins", opt->allowed_origins,
                  "web pages (origins such as https://app.example.com, comma-separated, or *) that may call the server "
                  "from a browser (CORS); default none")
      ->delimiter(',');
  cmd->add_option("--log-level", opt->log_level,
                  "debug, info, warning or error; each request is a line at info (health probes and metric scrapes "
                  "at debug, server errors at warning); default info")
      ->check(CLI::IsMember({"debug", "info", "warning", "error"}));
  cmd->add_option("--log-format", opt->log_format,
                  "text, or json: one JSON object per line for a log collector (default text)")
      ->check(CLI::IsMember({"text", "json"}));
  add_engine_options(*cmd, opt->engine, opt->kv_pool);
  cmd->callback([opt] { run_serve(*opt); });
}

}  // namespace nanoserve::cli
