// nanoserve bench: offline throughput. N requests of given input/output lengths, or lengths drawn
// uniformly from ranges (random token ids, or prompts from a JSONL file), kept `concurrency` at a
// time in flight on the engine's loop; throughput, time to first token and inter-token latency.
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <fstream>
#include <optional>
#include <mutex>
#include <nlohmann/json.hpp>
#include <random>

#include "cli/bench_forward.h"
#include "cli/checks.h"
#include "cli/commands.h"
#include "cli/common.h"
#include "cli/sampling_options.h"
#include "grammar/json_schema.h"
#include "util/error.h"
#include "util/json_parse.h"

namespace nanoserve::cli {

namespace {

using Clock = std::chrono::steady_clock;

// Request lengths, drawn uniformly from [low, high] (low == high: all the same).
struct LengthRange {
  int low = 128, high = 128;
  std::string describe() const { return low == high ? std::to_string(low) : fmt::format("{}-{}", low, high); }
};

struct BenchOptions {
  ModelOptions model;
  int pp = 0, tg = 0, repetitions = 5;  // the forward-pass benchmark (bench_forward.cpp)
  int num_requests = 64, concurrency = 8, warmup_requests = 0;
  LengthRange input_len, output_len;
  std::string dataset;
  std::string json_schema;  // a file: every request's output constrained to its instances
  uint64_t seed = 0;
  EngineOptions engine;
  KvPoolOptions kv_pool;
};

struct Timing {
  Clock::time_point submitted, first_token, last_token, finished;
  int64_t prompt_tokens = 0, output_tokens = 0;
  std::vector<double> gaps_ms;  // between one token and the next (a step's tokens share its gap)
};

double ms(Clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

// A usage mistake, told as CLI11 tells its own.
LengthRange parse_range(const std::string& flag, const std::string& text) {
  LengthRange r;
  const size_t colon = text.find(':');
  try {
    size_t used_low = 0, used_high = 0;
    if (colon == std::string::npos) throw std::invalid_argument("no colon");
    r.low = std::stoi(text.substr(0, colon), &used_low);
    r.high = std::stoi(text.substr(colon + 1), &used_high);
    if (used_low != colon || used_high != text.size() - colon - 1) throw std::invalid_argument("trailing text");
  } catch (const std::exception&) {
    throw CLI::ValidationError(fmt::format("{} {}: expected two token counts as A:B, e.g. 100:1024", flag, text));
  }
  if (r.low < 1 || r.high < r.low) throw CLI::ValidationError(fmt::format("{} {}: expected 1 <= A <= B", flag, text));
  return r;
}

// Each request's (input, output) lengths, seeded: the same list for the same options.
std::vector<std::pair<int, int>> draw_lengths(const BenchOptions& opt) {
  std::mt19937_64 rng(opt.seed ^ 0x6c656e67746873);  // apart from the prompts' own stream
  auto draw = [&](const LengthRange& r) { return std::uniform_int_distribution<int>(r.low, r.high)(rng); };
  std::vector<std::pair<int, int>> lengths;
  for (int i = 0; i < opt.num_requests; ++i) {
    const int input = draw(opt.input_len);
    lengths.emplace_back(input, draw(opt.output_len));
  }
  return lengths;
}

std::vector<std::vector<int32_t>> make_prompts(const BenchOptions& opt, const Model& model,
                                               const std::vector<std::pair<int, int>>& lengths) {
  std::vector<std::vector<int32_t>> prompts;
  if (!opt.dataset.empty()) {
    Tokenizer tokenizer = load_tokenizer(opt.model);
    std::ifstream in(opt.dataset);
    if (!in) fail("{}: cannot open", opt.dataset);
    std::string line;
    for (int n = 1; std::getline(in, line) && static_cast<int>(prompts.size()) < opt.num_requests; ++n) {
      const auto j = parse_json(line, fmt::format("{}:{}", opt.dataset, n));
      const char* key = j.is_object() && j.contains("prompt") ? "prompt" : "text";
      if (!j.is_object() || !j.contains(key) || !j[key].is_string())
        fail("{}:{}: expected {{\"prompt\": ...}} or {{\"text\": ...}}", opt.dataset, n);
      auto ids = tokenizer.encode(j[key].get<std::string>());
      const auto limit = static_cast<size_t>(lengths[prompts.size()].first);
      if (ids.size() > limit) ids.resize(limit);
      prompts.push_back(std::move(ids));
    }
    if (prompts.empty()) fail("{}: no prompts", opt.dataset);
    for (size_t i = 0; static_cast<int>(prompts.size()) < opt.num_requests; ++i) {
      auto ids = prompts[i];
      ids.resize(std::min(ids.size(), static_cast<size_t>(lengths[prompts.size()].first)));
      prompts.push_back(std::move(ids));
    }
    return prompts;
  }
  std::mt19937_64 rng(opt.seed);
  std::uniform_int_distribution<int32_t> token(0, static_cast<int32_t>(model.config.vocab_size - 1));
  for (int i = 0; i < opt.num_requests; ++i) {
    std::vector<int32_t> ids(static_cast<size_t>(lengths[static_cast<size_t>(i)].first));
    for (auto& t : ids) t = token(rng);
    prompts.push_back(std::move(ids));
  }
  return prompts;
}

void report(const BenchOptions& opt, std::span<const Timing> timings, double seconds, const EngineStats& stats,
            const std::string& device) {
  int64_t input = 0, output = 0;
  std::vector<double> ttft, tpot, itl;
  for (const auto& t : timings) {
    input += t.prompt_tokens;
    output += t.output_tokens;
    ttft.push_back(ms(t.first_token - t.submitted));
    if (t.output_tokens > 1) tpot.push_back(ms(t.finished - t.first_token) / static_cast<double>(t.output_tokens - 1));
    itl.insert(itl.end(), t.gaps_ms.begin(), t.gaps_ms.end());
  }
  fmt::print("requests {} | input {} | output {} | concurrency {} | {}\n", timings.size(), opt.input_len.describe(),
             opt.output_len.describe(), opt.concurrency, device);
  if (opt.warmup_requests) fmt::print("after {} warm-up requests\n", opt.warmup_requests);
  fmt::print("{:<28}{:>12}{:>12}\n", "tokens in / out", input, output);
  fmt::print("{:<28}{:>12.2f}\n", "requests/s", static_cast<double>(timings.size()) / seconds);
  fmt::print("{:<28}{:>12.1f}\n", "input tok/s", static_cast<double>(input) / seconds);
  fmt::print("{:<28}{:>12.1f}\n", "output tok/s", static_cast<double>(output) / seconds);
  fmt::print("{:<28}{:>12.2f}{:>12.2f}\n", "TTFT ms p50 / p99", percentile(ttft, 0.5), percentile(ttft, 0.99));
  fmt::print("{:<28}{:>12.3f}{:>12.3f}\n", "time per output token ms", percentile(tpot, 0.5), percentile(tpot, 0.99));
  fmt::print("{:<28}{:>12.3f}{:>12.3f}\n", "inter-token latency ms", percentile(itl, 0.5), percentile(itl, 0.99));
  fmt::print("{:<28}{:>12} / {}\n", "peak KV blocks used", stats.peak_used_blocks, stats.total_blocks);
  fmt::print("{:<28}{:>12}\n", "preemptions", stats.preemptions);
}

// Runs requests [first, first + count) `concurrency` at a time on the started engine; returns the
// seconds they took, each request's timing in `timings`.
double run_wave(Engine& engine, const std::vector<std::vector<int32_t>>& prompts,
                const std::vector<std::pair<int, int>>& lengths, size_t first, size_t count, int concurrency,
                const std::shared_ptr<const grammar::Grammar>& grammar, std::vector<Timing>& timings) {
  std::mutex m;
  std::condition_variable done;
  size_t next = first, finished = 0, in_flight = 0;
  std::string error;
  auto submit_next = [&]() {  // with m held
    const size_t i = next++;
    SamplingParams p;
    p.temperature = 0;
    p.max_tokens = lengths[i].second;
    p.ignore_eos = true;
    p.grammar = grammar;
    timings[i].submitted = Clock::now();
    timings[i].prompt_tokens = static_cast<int64_t>(prompts[i].size());
    ++in_flight;
    engine.submit({prompts[i], p}, [&, i](const Event& e) {
      std::lock_guard lock(m);
      Timing& t = timings[i];
      if (!e.tokens.empty()) {
        const auto now = Clock::now();
        if (t.output_tokens == 0) {
          t.first_token = now;
        } else {
          const double gap = ms(now - t.last_token) / static_cast<double>(e.tokens.size());
          t.gaps_ms.insert(t.gaps_ms.end(), e.tokens.size(), gap);
        }
        t.last_token = now;
      }
      t.output_tokens += static_cast<int64_t>(e.tokens.size());
      if (!e.finish) return;
      if (*e.finish == FinishReason::Error) error = e.error;
      t.finished = Clock::now();
      ++finished;
      --in_flight;
      done.notify_one();
    });
  };
  const auto start = Clock::now();
  {
    std::unique_lock lock(m);
    while (finished < count) {
      while (next < first + count && in_flight < static_cast<size_t>(concurrency)) submit_next();
      done.wait(lock);
    }
  }
  if (!error.empty()) fail("{}", error);
  return std::chrono::duration<double>(Clock::now() - start).count();
}

void run_bench(BenchOptions opt) {
  Model model = load(opt.model);
  // The warm-up requests come first, drawn like the others.
  const auto warmup = static_cast<size_t>(opt.warmup_requests);
  opt.num_requests += opt.warmup_requests;
  const auto lengths = draw_lengths(opt);
  const auto all_prompts = make_prompts(opt, model, lengths);
  const auto ranks = open_ranks(opt.model, model);
  std::optional<Tokenizer> tokenizer;
  std::shared_ptr<const grammar::Grammar> grammar;
  if (!opt.json_schema.empty()) {  // structured output needs the tokenizer's vocabulary
    tokenizer.emplace(load_tokenizer(opt.model));
    grammar =
        std::make_shared<const grammar::Grammar>(grammar::compile_json_schema(read_ordered_json_file(opt.json_schema)));
  }
  Engine engine(*ranks, tokenizer ? &*tokenizer : nullptr,
                engine_options(opt.engine, opt.kv_pool, model.config, *ranks));
  std::vector<Timing> all_timings(all_prompts.size());
  engine.start();
  try {
    if (warmup) run_wave(engine, all_prompts, lengths, 0, warmup, opt.concurrency, grammar, all_timings);
    const size_t count = all_prompts.size() - warmup;
    const double seconds = run_wave(engine, all_prompts, lengths, warmup, count, opt.concurrency, grammar, all_timings);
    engine.stop();
    report(opt, std::span(all_timings).subspan(warmup), seconds, engine.stats(), ranks->describe());
  } catch (...) {
    engine.stop();
    throw;
  }
}

// --NAME-len N (every request) and --NAME-len-range A:B (drawn uniformly), either one setting `range`.
void add_length_options(CLI::App& cmd, const std::string& name, LengthRange& range, const std::string& what) {
  const std::string fixed = "--" + name + "-len", ranged = fixed + "-range";
  auto set_fixed = [&range](int n) { range = {n, n}; };
  auto set_range = [&range, ranged](const std::string& text) { range = parse_range(ranged, text); };
  cmd.add_option_function<int>(fixed, set_fixed, what + " per request (default 128)")->check(positive());
  cmd.add_option_function<std::string>(ranged, set_range,
                                       "A:B: " + what + " drawn uniformly from A..B (seeded by --seed), e.g. 100:1024")
      ->excludes(fixed);
}

}  // namespace

void register_bench(CLI::App& app) {
  auto opt = std::make_shared<BenchOptions>();
  CLI::App* cmd =
      app.add_subcommand("bench", "Offline throughput: many requests through the engine at a given concurrency");
  add_model_options(*cmd, opt->model);
  add_parallel_option(*cmd, opt->model);
  cmd->add_option("--num-requests", opt->num_requests, "requests to run (default 64)")->check(positive());
  cmd->add_option("--warmup-requests", opt->warmup_requests,
                  "requests run first and left out of the figures, drawn like the others: caches warm (a grammar's "
                  "masks, the GPU's recorded steps), as in a server that has been up a while (default 0)")
      ->check(non_negative());
  add_length_options(*cmd, "input", opt->input_len, "prompt tokens");
  add_length_options(*cmd, "output", opt->output_len, "generated tokens");
  cmd->add_option("--concurrency", opt->concurrency, "requests in flight at once (default 8)")->check(positive());
  cmd->add_option("--dataset", opt->dataset,
                  "JSONL of {\"prompt\": ...} or {\"text\": ...} instead of random token ids");
  cmd->add_option("--seed", opt->seed, "seed for the random prompts");
  cmd->add_option("--json-schema", opt->json_schema,
                  "a JSON Schema file: every request's output is constrained to it (structured output's cost)")
      ->check(CLI::ExistingFile);
  add_engine_options(*cmd, opt->engine, opt->kv_pool);
  cmd->add_option("--pp", opt->pp,
                  "instead of the engine run: time the forward pass on a prompt of this many tokens (llama-bench -p)")
      ->check(positive());
  cmd->add_option("--tg", opt->tg, "instead of the engine run: time this many one-token steps (llama-bench -n)")
      ->check(positive());
  cmd->add_option("--repetitions", opt->repetitions, "--pp/--tg: runs of each, averaged (default 5)")
      ->check(positive());
  cmd->callback([opt] {
    if (opt->pp == 0 && opt->tg == 0) return run_bench(*opt);
    if (opt->model.tensor_parallel_size > 1) {
      fail(
          "--pp/--tg time one backend's forward pass; measure --tensor-parallel-size {} with the engine run (no "
          "--pp/--tg)",
          opt->model.tensor_parallel_size);
    }
    run_forward_bench({opt->model, opt->pp, opt->tg, opt->repetitions, opt->seed, opt->kv_pool.kv_dtype});
  });
}

}  // namespace nanoserve::cli
