// The nanoserve binary end to end: what a user types, what they see.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>

#include <cstdio>
#include <filesystem>
#include <regex>

#include "formats/safetensors.h"
#include "test_support.h"
#include "tokenizer/tokenizer.h"
#include "util/json_fields.h"

namespace nanoserve {
namespace {

using test::run_cli;
using Json = nlohmann::json;

bool contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

TEST(Cli, HelpExplainsEveryCommand) {
  auto r = run_cli({"--help"});
  EXPECT_EQ(r.exit_code, 0);
  for (const char* cmd : {"generate", "logits", "perplexity", "inspect", "serve"})
    EXPECT_TRUE(contains(r.out, cmd)) << r.out;
  r = run_cli({"generate", "--help"});
  EXPECT_EQ(r.exit_code, 0);
  for (const char* flag : {"--model", "--prompt", "--max-tokens", "--temperature", "--seed"})
    EXPECT_TRUE(contains(r.out, flag)) << r.out;
  r = run_cli({"serve", "--help"});
  EXPECT_EQ(r.exit_code, 0);
  for (const char* flag :
       {"--host", "--port", "--api-key", "--max-num-seqs", "--kv-cache-memory", "--shutdown-grace"}) {
    EXPECT_TRUE(contains(r.out, flag)) << r.out;
  }
}

// tokenize/detokenize against the Hugging Face ids of the demo's edge cases, from a directory
// holding only the tokenizer files.
TEST(Cli, TokenizeMatchesHuggingFaceAndDetokenizeRoundTrips) {
  const auto cases = read_json_file(test::fixture("demo/tokenizer_ids.json")).at("cases");
  test::ScratchDir dir;
  std::filesystem::copy_file(test::demo_model_dir() + "/tokenizer.json", dir.file("tokenizer.json"));
  for (size_t i = cases.size() - 13; i < cases.size(); ++i) {  // the edge-case strings
    const std::string text = cases[i].at("text");
    auto r = run_cli({"tokenize", "-m", dir.path().string()}, text);
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(nlohmann::json::parse(r.out), cases[i].at("ids")) << text;
    r = run_cli({"tokenize", "--no-special", "-m", dir.path().string()}, text);
    EXPECT_EQ(nlohmann::json::parse(r.out), cases[i].at("ids_no_special")) << text;
    r = run_cli({"detokenize", "-m", dir.path().string()}, cases[i].at("ids_no_special").dump());
    EXPECT_EQ(r.out, text);
  }
  // Issue 30: --no-special means "without special tokens" both ways, and by default detokenize
  // keeps them, as POST /detokenize and Hugging Face's decode do.
  auto r = run_cli({"detokenize", "-m", dir.path().string()}, "[0, 1738]");
  EXPECT_EQ(r.out,
            "<|begin_of_text|>" + run_cli({"detokenize", "--no-special", "-m", dir.path().string()}, "[1738]").out);
  EXPECT_EQ(run_cli({"detokenize", "--no-special", "-m", dir.path().string()}, "[0, 1738]").out,
            run_cli({"detokenize", "-m", dir.path().string()}, "[1738]").out);
  r = run_cli({"detokenize", "-m", dir.path().string()}, "[1, 99999]");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(contains(r.err, "element 1 (99999) is not a token id of this vocabulary (4096 tokens)")) << r.err;
}

// grammar-test prints one line per MaskBench file, each instance judged, then the sums; a schema
// it cannot compile is that file's error and the run goes on.
TEST(Cli, GrammarTestJudgesEachInstanceAndSumsUp) {
  test::ScratchDir dir;
  test::write_file(dir.file("object.json"), R"({"schema": {"type": "object", "properties": {"a": {"type": "integer"}},
      "required": ["a"]}, "tests": [{"valid": true, "data": {"a": 12}}, {"valid": false, "data": {"a": "x"}},
      {"valid": false, "data": {}}, {"valid": true, "data": {"a": -3}}]})");
  test::write_file(dir.file("not.json"),
                   R"({"schema": {"not": {"type": "string"}}, "tests": [{"valid": true, "data": 1}]})");
  const auto r = run_cli({"grammar-test", dir.file("object.json"), dir.file("not.json")});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::vector<Json> lines;
  for (size_t at = 0, end; (end = r.out.find('\n', at)) != std::string::npos; at = end + 1)
    lines.push_back(Json::parse(r.out.substr(at, end - at)));
  ASSERT_EQ(lines.size(), 3u) << r.out;
  EXPECT_EQ(lines[0].at("accepted"), Json::parse("[true, false, false, true]"));
  EXPECT_EQ(lines[0].at("error"), nullptr);
  EXPECT_GT(lines[0].at("tokens").get<int>(), 10);
  EXPECT_EQ(lines[1].at("compiled"), false);
  EXPECT_TRUE(contains(lines[1].at("error").get<std::string>(), "'not' is not supported")) << lines[1];
  const Json& sum = lines[2];
  EXPECT_EQ(sum.at("files"), 2);
  EXPECT_EQ(sum.at("compiled"), 1);
  EXPECT_EQ(sum.at("passing"), 1);
  EXPECT_EQ(sum.at("tests"), 4);
  EXPECT_EQ(sum.at("invalid_accepted"), 0);
  EXPECT_EQ(sum.at("valid_rejected"), 0);
  EXPECT_EQ(sum.at("tokens"), lines[0].at("tokens"));
}

TEST(Cli, ServeRefusesAnAddressItCannotUse) {
  auto r = run_cli({"serve", "--host", "not-an-ip.invalid"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(
      contains(r.err, "error: --host not-an-ip.invalid: neither an IP address nor a name this machine resolves"))
      << r.err;
}

// With no -m the bundled demo model runs; greedy text is the float64 HF reference continuation.
TEST(Cli, GenerateWithDefaultModelMatchesReferenceContinuation) {
  auto ref = test::read_reference(test::fixture("demo/reference.safetensors"));
  Tokenizer tokenizer = Tokenizer::from_file(test::demo_model_dir());
  const auto& greedy = ref.ints.at("greedy_tokens");
  const std::string prompt = "And the LORD said unto Moses,";
  auto r = run_cli({"generate", "-p", prompt, "-n", "32", "--temperature", "0"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, prompt + tokenizer.decode({greedy.begin(), greedy.end()}) + "\n");
  EXPECT_TRUE(contains(r.err, "tok/s")) << r.err;
}

// Split two ways (CPU ranks on threads) the demo model gives the same greedy text; a split that
// does not divide the KV heads is refused by name.
TEST(Cli, TensorParallelGenerateGivesTheSameText) {
  const std::vector<std::string> args = {"generate",      "-p", "And the LORD said unto Moses,", "-n", "24",
                                         "--temperature", "0"};
  auto one = run_cli(args);
  auto split = args;
  split.insert(split.end(), {"--tensor-parallel-size", "2"});
  auto two = run_cli(split);
  ASSERT_EQ(two.exit_code, 0) << two.err;
  EXPECT_EQ(two.out, one.out);
  EXPECT_TRUE(contains(two.err, "2 tensor-parallel ranks")) << two.err;
  split.back() = "4";
  auto four = run_cli(split);
  EXPECT_NE(four.exit_code, 0);
  EXPECT_TRUE(contains(four.err, "num_key_value_heads=2 does not divide by 4")) << four.err;
}

TEST(Cli, SeededSamplingIsReproducible) {
  auto a = run_cli({"generate", "-p", "The", "-n", "16", "--temperature", "0.8", "--seed", "7"});
  auto b = run_cli({"generate", "-p", "The", "-n", "16", "--temperature", "0.8", "--seed", "7"});
  ASSERT_EQ(a.exit_code, 0) << a.err;
  EXPECT_EQ(a.out, b.out);
}

// On the float32 reference path (NANOSERVE_CPU_F32=1, which the child inherits), to the fixtures'
// float32 logit tolerance; the default path's bf16 products are held to theirs in model_test.
TEST(Cli, LogitsCommandMatchesReference) {
  setenv("NANOSERVE_CPU_F32", "1", 1);
  auto ref = test::read_reference(test::fixture("llama32/reference.safetensors"));
  test::ScratchDir dir;
  const auto& ids = ref.ints.at("input_ids");
  write_safetensors(dir.file("in.safetensors"),
                    {{"input_ids", DType::I64, {static_cast<int64_t>(ids.size())}, ids.data()}});
  auto r = run_cli({"logits", "-m", test::fixture("llama32"), "--input", dir.file("in.safetensors"), "--output",
                    dir.file("out.safetensors")});
  unsetenv("NANOSERVE_CPU_F32");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  SafetensorsFile out(dir.file("out.safetensors"));
  const TensorView& logits = out.tensors().at("logits");
  EXPECT_EQ(logits.shape, ref.shapes.at("logits"));
  const auto& expected = ref.floats.at("logits");
  EXPECT_LE(test::max_abs_diff(reinterpret_cast<const float*>(logits.data), expected.data(), expected.size()), 1e-4f);
}

TEST(Cli, LogitsRejectsIdsOutsideVocabulary) {
  test::ScratchDir dir;
  const int64_t ids[2] = {1, 9999};
  write_safetensors(dir.file("in.safetensors"), {{"input_ids", DType::I64, {2}, ids}});
  auto r = run_cli({"logits", "-m", test::fixture("llama32"), "--input", dir.file("in.safetensors"), "--output",
                    dir.file("out.safetensors")});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(contains(r.err, "input_ids[1] = 9999 is outside the vocabulary of 512")) << r.err;
}

// MODEL_CARD.md: the held-out documents in 512-token windows give ppl 30.069.
// The --text protocol end to end on a short text (the whole-file runs are in perplexity_test.cpp).
TEST(Cli, PerplexityOfPlainTextInChunks) {
  test::ScratchDir dir;
  test::write_file(dir.file("t.txt"), test::read_file(test::fixture("gguf/heldout.txt")).substr(0, 2000));
  auto r = run_cli({"perplexity", "--text", dir.file("t.txt"), "--context", "64", "-m",
                    test::demo_model_dir() + "/demo-q4_k_m.gguf", "--kv-cache-dtype", "q8_0"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  int windows = 0, scored = 0;
  ASSERT_EQ(std::sscanf(r.out.c_str(), "windows %d, tokens scored %d", &windows, &scored), 2) << r.out;
  EXPECT_GE(windows, 5);
  EXPECT_EQ(scored, windows * 31);  // predictions of positions 32..62 of each 64-token chunk
  r = run_cli({"perplexity", "--text", dir.file("t.txt"), "--file", dir.file("t.txt")});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_TRUE(contains(r.err, "give one of --file (JSONL documents) or --text (plain text)")) << r.err;
}

// The forward-pass benchmark (llama-bench's measures): one line per measure, a positive rate.
TEST(Cli, BenchForwardPass) {
  auto r = run_cli(
      {"bench", "--pp", "16", "--tg", "4", "--repetitions", "2", "-m", test::demo_model_dir() + "/demo-q4_k_m.gguf"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  double pp = 0, tg = 0;
  const auto pp_at = r.out.find("pp16"), tg_at = r.out.find("tg4");
  ASSERT_NE(pp_at, std::string::npos) << r.out;
  ASSERT_NE(tg_at, std::string::npos) << r.out;
  ASSERT_EQ(std::sscanf(r.out.c_str() + pp_at, "pp16 %lf", &pp), 1) << r.out;
  ASSERT_EQ(std::sscanf(r.out.c_str() + tg_at, "tg4 %lf", &tg), 1) << r.out;
  EXPECT_GT(pp, 0);
  EXPECT_GT(tg, 0);
  r = run_cli({"bench", "--tg", "4", "--repetitions", "1"});  // one measure alone
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(contains(r.out, "tg4")) << r.out;
  EXPECT_FALSE(contains(r.out, "pp")) << r.out;
}

// Q8_0 rows take 34 bytes per 32 values: the same memory holds 128/34 times the blocks.
TEST(Cli, Q8KvCacheHoldsMoreBlocks) {
  auto r = run_cli({"generate", "-p", "Blessed are", "-n", "4", "--temperature", "0", "--kv-cache-dtype", "q8_0"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(contains(r.err, "KV cache: 0.25 GiB q8_0, 7710 blocks of 16 tokens")) << r.err;
  r = run_cli({"generate", "-p", "x", "--kv-cache-dtype", "q4_0"});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_TRUE(contains(r.err, "--kv-cache-dtype: expected f32, bf16, fp8 or q8_0, got q4_0")) << r.err;
}

// bf16 rows take half of f32's: twice the blocks (f32: 2048), on the CPU as on a GPU.
TEST(Cli, Bf16KvCacheHoldsTwiceTheBlocks) {
  const auto r = run_cli({"generate", "-p", "Blessed are", "-n", "4", "--temperature", "0", "--kv-cache-dtype", "bf16"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(contains(r.err, "KV cache: 0.25 GiB bf16, 4096 blocks of 16 tokens")) << r.err;
}

TEST(Cli, InspectShowsTiedAliasAndParameterCount) {
  auto r = run_cli({"inspect"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(contains(r.out, "alias of embed (same storage, verified)")) << r.out;
  // 4096x256 embedding + 8 layers x (2x256 norms + 256x256 q, o + 2x 128x256 k, v + 3x 768x256 MLP) + 256 final norm
  EXPECT_TRUE(contains(r.out, "parameters    7344384 (7.34M)")) << r.out;
  EXPECT_TRUE(contains(r.out, "GQA 2:1")) << r.out;
}

// inspect names the family and every option that changes the math.
TEST(Cli, InspectShowsFamilyOptions) {
  auto r = run_cli({"inspect", "-m", test::fixture("gemma3")});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  for (const char* line :
       {"family        gemma3 (model_type gemma3_text)", "norm          rms (1 + w), eps 1e-05, plus post-attention",
        "mlp           gated, gelu (tanh)", "qk norm       per head", "attention     scale 0.25",
        "sliding       8 on layers 0*,2* (* local RoPE)", "rope          theta 1000000, scaling linear, factor 2",
        "local rope    theta 10000, scaling default", "embed scale   8", "logit softcap 10"}) {
    EXPECT_TRUE(contains(r.out, line)) << line << "\n" << r.out;
  }
  r = run_cli({"inspect", "-m", test::fixture("olmoe_norm_topk")});
  EXPECT_TRUE(contains(r.out, "experts       8, top 3, renormalized")) << r.out;
  EXPECT_TRUE(contains(r.out, "clip qkv 1")) << r.out;
  r = run_cli({"inspect", "-m", test::fixture("gpt2")});
  EXPECT_TRUE(contains(r.out, "positions     learned (128)")) << r.out;
  EXPECT_TRUE(contains(r.out, "biases        q/k/v true, o true, mlp true")) << r.out;
}

TEST(Cli, BenchReportsThroughputAndLatency) {
  auto r = run_cli({"bench", "--num-requests", "6", "--input-len", "20", "--output-len", "8", "--concurrency", "3"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  for (const char* line : {"requests 6 | input 20 | output 8 | concurrency 3", "requests/s", "output tok/s",
                           "TTFT ms p50 / p99", "time per output token ms", "peak KV blocks used", "preemptions"}) {
    EXPECT_TRUE(contains(r.out, line)) << line << "\n" << r.out;
  }
  EXPECT_TRUE(contains(r.err, "KV cache: 0.25 GiB f32, 2048 blocks of 16 tokens")) << r.err;
}

// nano-vllm's workload in small: lengths drawn from ranges, the same for the same seed; the totals
// fall within the ranges' bounds; a malformed range is named.
TEST(Cli, BenchDrawsLengthsFromRanges) {
  auto totals = [](const std::string& seed) {
    auto r = run_cli({"bench", "--num-requests", "8", "--concurrency", "8", "--input-len-range", "10:40",
                      "--output-len-range", "2:6", "--seed", seed});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    EXPECT_TRUE(contains(r.out, "requests 8 | input 10-40 | output 2-6")) << r.out;
    EXPECT_TRUE(contains(r.out, "inter-token latency ms")) << r.out;
    std::smatch m;
    EXPECT_TRUE(std::regex_search(r.out, m, std::regex(R"(tokens in / out +(\d+) +(\d+))"))) << r.out;
    return std::pair(std::stoi(m[1]), std::stoi(m[2]));
  };
  const auto [in, out] = totals("1");
  EXPECT_GE(in, 8 * 10);
  EXPECT_LE(in, 8 * 40);
  EXPECT_GE(out, 8 * 2);
  EXPECT_LE(out, 8 * 6);
  EXPECT_EQ(totals("1"), std::pair(in, out));
  EXPECT_NE(totals("2"), std::pair(in, out));
  // Warm-up requests run first and stay out of the figures: the 8 measured keep their totals.
  auto warm = run_cli({"bench", "--num-requests", "8", "--concurrency", "8", "--input-len", "12", "--output-len", "3",
                       "--warmup-requests", "5"});
  ASSERT_EQ(warm.exit_code, 0) << warm.err;
  EXPECT_TRUE(contains(warm.out, "requests 8 | input 12 | output 3")) << warm.out;
  EXPECT_TRUE(contains(warm.out, "after 5 warm-up requests")) << warm.out;
  EXPECT_TRUE(std::regex_search(warm.out, std::regex(R"(tokens in / out +96 +24\n)"))) << warm.out;
  auto bad = run_cli({"bench", "--input-len-range", "40:10"});
  EXPECT_NE(bad.exit_code, 0);
  EXPECT_TRUE(contains(bad.err, "--input-len-range 40:10: expected 1 <= A <= B")) << bad.err;
  bad = run_cli({"bench", "--output-len-range", "5"});
  EXPECT_TRUE(contains(bad.err, "--output-len-range 5: expected two token counts as A:B, e.g. 100:1024")) << bad.err;
}

// NANOSERVE_ENGINE_PROFILE=1: the engine thread's time by phase, a line each, on stderr; with a
// grammar, the waits for its masks among them. Unset, nothing.
TEST(Cli, EngineProfileSaysWhereTheStepsWent) {
  const test::ScratchDir dir;
  const std::string schema = dir.file("schema.json");
  test::write_file(schema, R"({"type": "array", "items": {"type": "integer"}})");
  const std::vector<std::string> args{"bench", "--num-requests", "4", "--concurrency", "4",   "--input-len",
                                      "8",     "--output-len",   "6", "--json-schema", schema};
  const auto r = run_cli(args, "", {"NANOSERVE_ENGINE_PROFILE=1"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(contains(r.err, "engine thread time by phase:")) << r.err;
  for (const char* phase : {"forward", "generate step", "mask fill", "mask wait", "sampling"}) {
    EXPECT_TRUE(std::regex_search(r.err, std::regex(std::string("\\n  ") + phase + " +[0-9.]+ ms +[0-9]+ calls")))
        << phase << "\n"
        << r.err;
  }
  EXPECT_FALSE(contains(run_cli(args).err, "engine thread time"));
}

TEST(Cli, GenerateStopsAtAStopString) {
  auto full = run_cli({"generate", "-p", "And the LORD said unto Moses,", "-n", "32"});
  auto cut = run_cli({"generate", "-p", "And the LORD said unto Moses,", "-n", "32", "--stop", "Aaron"});
  ASSERT_EQ(cut.exit_code, 0) << cut.err;
  EXPECT_EQ(cut.out, full.out.substr(0, full.out.find("Aaron")) + "\n");
}

// Two turns and a reset through the demo model's template; the second turn finds the first in the
// prefix cache, and the reset conversation starts from scratch.
TEST(Cli, ChatKeepsTheConversationAndReusesItsBlocks) {
  auto r = run_cli({"chat", "--temperature", "0", "-n", "24"}, "Hello there\nWhat is wisdom?\n/reset\nHello there\n");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(contains(r.err, "[prompt 15 tokens, 0 from cache | 24 tokens")) << r.err;
  EXPECT_TRUE(contains(r.err, "16 from cache")) << r.err;
  // After /reset the same first message renders the same 15-token prompt again.
  const std::string first_turn = "[prompt 15 tokens, 0 from cache | 24 tokens";
  EXPECT_NE(r.err.find(first_turn), r.err.rfind(first_turn)) << r.err;
}

// Issue 30: a conversation that outgrows the context used to end the program (rc 1) on its third
// turn. The oldest turns are now left out, said on stderr; a message too long on its own fails
// that turn alone, and the conversation goes on.
TEST(Cli, ChatOutgrowsTheContextWithoutEnding) {
  auto r = run_cli({"chat", "--temperature", "0", "-n", "400", "--ignore-eos"},
                   "Hello there\nWhat is wisdom?\nTell me more\n");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(contains(r.err, "[prompt 427 tokens, 16 from cache | 400 tokens")) << r.err;
  EXPECT_TRUE(contains(r.err, "[the context is full: the oldest 2 messages were left out]\n[prompt 429 tokens"))
      << r.err;
  std::string long_message;
  for (int i = 0; i < 1500; ++i) long_message += "wisdom ";
  r = run_cli({"chat", "--temperature", "0", "-n", "8"}, long_message + "\nHello there\n");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(contains(r.err, "error: this message is ")) << r.err;
  EXPECT_TRUE(contains(r.err, "[prompt 15 tokens, 0 from cache | 8 tokens")) << r.err;  // as if it had not been sent
}

// Issue 30: Ctrl-C during a reply killed the program (rc 130). It now stops the reply, and the
// conversation goes on. The chat runs on pipes here; SIGINT comes once the reply has begun.
TEST(Cli, ChatCtrlCStopsTheReplyNotTheProgram) {
  int to_child[2], from_child[2], errors[2];
  ASSERT_EQ(pipe(to_child), 0);
  ASSERT_EQ(pipe(from_child), 0);
  ASSERT_EQ(pipe(errors), 0);
  const pid_t pid = fork();
  if (pid == 0) {
    dup2(to_child[0], 0);
    dup2(from_child[1], 1);
    dup2(errors[1], 2);
    for (int fd : {to_child[0], to_child[1], from_child[0], from_child[1], errors[0], errors[1]}) close(fd);
    execl(NANOSERVE_BINARY, NANOSERVE_BINARY, "chat", "-n", "400", "--ignore-eos", "--temperature", "0", nullptr);
    _exit(127);
  }
  close(to_child[0]);
  close(from_child[1]);
  close(errors[1]);
  const std::string first = "Hello there\n";
  ASSERT_EQ(write(to_child[1], first.data(), first.size()), static_cast<ssize_t>(first.size()));
  char buffer[256];
  ASSERT_GT(read(from_child[0], buffer, sizeof buffer), 0);  // the reply has begun
  kill(pid, SIGINT);
  const std::string rest = "What is wisdom?\n/exit\n";
  ASSERT_EQ(write(to_child[1], rest.data(), rest.size()), static_cast<ssize_t>(rest.size()));
  close(to_child[1]);
  while (read(from_child[0], buffer, sizeof buffer) > 0) {}
  std::string err;
  for (ssize_t n; (n = read(errors[0], buffer, sizeof buffer)) > 0;) err.append(buffer, static_cast<size_t>(n));
  int status = 0;
  waitpid(pid, &status, 0);
  ASSERT_TRUE(WIFEXITED(status)) << err;
  EXPECT_EQ(WEXITSTATUS(status), 0) << err;
  const std::string first_turn = "[stopped]\n[prompt 15 tokens, 0 from cache | ";
  const size_t at = err.find(first_turn);
  ASSERT_NE(at, std::string::npos) << err;
  EXPECT_LT(std::stoi(err.substr(at + first_turn.size())), 400) << "the first reply ran to the end: " << err;
  EXPECT_NE(err.find("[prompt ", at + first_turn.size()), std::string::npos) << "no second turn: " << err;
}

// Issue 30: /help went to the model. Slash commands are the chat's own: a conversation saved and
// loaded again continues where it was (its blocks come from the prefix cache), and a mistake in
// one (an unknown command, a missing file) leaves the chat running.
TEST(Cli, ChatSlashCommands) {
  test::ScratchDir dir;
  const std::string saved = dir.file("conversation.json");
  const auto r = run_cli({"chat", "--temperature", "0", "-n", "8"},
                         "/help\n/frob\n/system Be terse.\nHello there\n/save " + saved + "\n/reset\n/load " + saved +
                             "\nWhat is wisdom?\n/load /nonexistent.json\n/stats\n/exit\nnot a turn\n");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(contains(r.err, "/save FILE       write the conversation as JSON")) << r.err;
  EXPECT_TRUE(contains(r.err, "/frob: unknown command, or missing its FILE (/help lists them)")) << r.err;
  EXPECT_TRUE(contains(r.err, "[prompt 22 tokens, 0 from cache | 8 tokens")) << r.err;  // with the system prompt
  EXPECT_TRUE(contains(r.err, "[saved 3 messages to " + saved + "]")) << r.err;
  EXPECT_TRUE(contains(r.err, "[loaded 3 messages from " + saved + "]")) << r.err;
  EXPECT_TRUE(contains(r.err, "[prompt 43 tokens, 16 from cache | 8 tokens")) << r.err;
  EXPECT_TRUE(contains(r.err, "error: /nonexistent.json: cannot open")) << r.err;
  EXPECT_TRUE(contains(r.err, "prompt tokens computed 49, generated 16 | KV blocks 0 of 2048 in use")) << r.err;
  const auto conversation = nlohmann::json::parse(test::read_file(saved));
  EXPECT_EQ(conversation["messages"][0], (nlohmann::json{{"role", "system"}, {"content", "Be terse."}}));
  EXPECT_EQ(conversation["messages"][1]["content"], "Hello there");
  size_t turns = 0;
  for (size_t at = r.err.find("[prompt "); at != std::string::npos; at = r.err.find("[prompt ", at + 1)) ++turns;
  EXPECT_EQ(turns, 2u);  // nothing after /exit
}

TEST(Cli, ChatNeedsATemplate) {
  test::ScratchDir dir;
  test::copy_dir(test::demo_model_dir(), dir.path().string());
  test::write_file(dir.file("tokenizer_config.json"), "{}");
  auto r = run_cli({"chat", "-m", dir.path().string()}, "hi\n");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(contains(r.err,
                       "the model has no chat template (tokenizer_config.json chat_template, chat_template.jinja, or "
                       "GGUF tokenizer.chat_template); give one with --chat-template FILE"))
      << r.err;
  EXPECT_FALSE(contains(r.err, "loaded ")) << "the template is looked for before the weights load: " << r.err;
}

// Issue 29: a model without a template (a GGUF made without one, a base model) can chat with
// --chat-template, a file or the template itself; a directory's chat_template.jinja (as newer
// transformers save it) is the model's template.
TEST(Cli, ChatTemplateFromAFileAStringOrTheModelsJinjaFile) {
  test::ScratchDir dir;
  test::copy_dir(test::demo_model_dir(), dir.path().string());
  test::write_file(dir.file("tokenizer_config.json"), "{}");
  const std::string jinja =
      "{% for m in messages %}[{{ m.role }}] {{ m.content }}\n{% endfor %}{% if add_generation_prompt %}[assistant] {% "
      "endif %}";
  const std::string conversation =
      R"({"messages": [{"role": "user", "content": "Who was Moses?"}], "add_generation_prompt": true})";
  const std::string expected = "[user] Who was Moses?\n[assistant] ";
  auto r = run_cli({"chat-template", "-m", dir.path().string(), "--chat-template", jinja}, conversation);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, expected);
  test::write_file(dir.file("mine.jinja"), jinja);
  r = run_cli(
      {"chat", "-m", dir.path().string(), "--chat-template", dir.file("mine.jinja"), "-n", "4", "--temperature", "0"},
      "Who was Moses?\n");
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(contains(r.err, "[prompt 14 tokens, 0 from cache | 4 tokens"))
      << r.err;  // the rendered text's 14 (no BOS: templates write their own)
  test::write_file(dir.file("chat_template.jinja"), jinja);
  r = run_cli({"chat-template", "-m", dir.path().string()}, conversation);
  EXPECT_EQ(r.out, expected) << r.err;
  r = run_cli({"chat-template", "-m", dir.path().string(), "--chat-template", "/nonexistent/template.jinja"},
              conversation);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(
      r.err,
      "error: --chat-template /nonexistent/template.jinja: no such file, and not a Jinja template (no {{ or {%)\n");
}

TEST(Cli, ErrorsAreClearAndExitOne) {
  auto r = run_cli({"generate", "-m", "/nonexistent/model", "-p", "hi"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(
      r.err,
      "error: /nonexistent/model: no such file or directory, and not a Hub repository id (ORG/NAME[@REVISION])\n");
  r = run_cli({"generate", "-p", "hi", "-n", "5000"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(contains(
      r.err,
      "error: the prompt (2 tokens) plus max_tokens (5000) is 5002 tokens, more than the model's context of 1024"))
      << r.err;
  r = run_cli({"perplexity", "--file", "/nonexistent.jsonl"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(contains(r.err, "/nonexistent.jsonl: cannot open")) << r.err;
  r = run_cli({"frobnicate"});
  EXPECT_NE(r.exit_code, 0);
  r = run_cli({"generate"});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_TRUE(contains(r.err, "--prompt is required")) << r.err;
}

// Issue 30, the CLI part: a mistake is told with its fix, before the model loads (-m names a model
// that does not exist, so an error about anything else proves the check came first), exit 2 for
// usage and 1 for values.
TEST(Cli, MistakesAreToldWithTheirFixBeforeLoading) {
  const std::vector<std::pair<std::vector<std::string>, std::string>> cases = {
      {{"generat", "-p", "hi"}, "error: 'generat' is not a nanoserve command; did you mean 'generate'?\n"},
      {{"server"}, "error: 'server' is not a nanoserve command; did you mean 'serve'?\n"},
      {{"run"}, "error: 'run' is not a nanoserve command (nanoserve --help lists them)\n"},
      {{"generate", "-m", "/nonexistent", "--top_p", "0.5", "-p", "x"},
       "error: --top_p is not a flag of generate; did you mean --top-p?\n"},
      {{"serve", "-m", "/nonexistent", "-ngl", "99"},
       "error: -ngl is not a flag of serve: nanoserve keeps the whole model on one device: use --device cuda\n"},
      {{"generate", "models/demo", "-p", "x"}, "error: generate takes the model as a flag: generate -m models/demo\n"},
      {{"generate", "-m", "/nonexistent", "--top-p", "5", "-p", "x"}, "error: top_p must be in (0, 1], got 5\n"},
      {{"chat", "-m", "/nonexistent", "--min-p", "3"}, "error: min_p must be in [0, 1], got 3\n"},
      {{"serve", "-m", "/nonexistent", "--port", "99999"},
       "--port: 99999 is not in [0, 65535]\nRun with --help for more information.\n"},
      {{"serve", "-m", "/nonexistent", "--kv-cache-memory", "-1"},
       "--kv-cache-memory: -1 is not a positive number\nRun with --help for more information.\n"},
      {{"serve", "-m", "/nonexistent", "--max-queued", "lots"},
       "--max-queued: lots is not a number\nRun with --help for more information.\n"},
  };
  for (const auto& [args, expected] : cases) {
    const auto r = run_cli(args);
    EXPECT_EQ(r.err, expected) << args[0] << " " << args[1];
    EXPECT_NE(r.exit_code, 0);
  }
  // The resolver's words vary by machine; the sentence before them does not.
  const auto host = run_cli({"serve", "-m", "/nonexistent", "--host", "nosuchhost.invalid"});
  EXPECT_EQ(host.exit_code, 1);
  EXPECT_TRUE(
      contains(host.err, "error: --host nosuchhost.invalid: neither an IP address nor a name this machine resolves"))
      << host.err;
  // --help shows each sampling default as the command has it: generate is greedy with 64 tokens,
  // chat samples at 0.8 with 256.
  const auto generate_help = run_cli({"generate", "--help"}).out, chat_help = run_cli({"chat", "--help"}).out;
  EXPECT_TRUE(contains(generate_help, "-n,--max-tokens,--n-predict INT=64")) << generate_help;
  EXPECT_TRUE(contains(generate_help, "--temperature FLOAT=0 ")) << generate_help;
  EXPECT_TRUE(contains(chat_help, "-n,--max-tokens,--n-predict INT=256")) << chat_help;
  EXPECT_TRUE(contains(chat_help, "--temperature FLOAT=0.8 ")) << chat_help;
  EXPECT_TRUE(contains(generate_help, "  --no-prefix-caching   ")) << generate_help;
  // Another engine's spellings where the meaning is the same.
  const auto r = run_cli({"generate", "-p", "In the beginning", "--n-predict", "3"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "In the beginning there is a\n");
}

TEST(Cli, MalformedJsonlNamesTheLine) {
  test::ScratchDir dir;
  test::write_file(dir.file("bad.jsonl"), "{\"text\": \"fine\"}\n{\"txt\": 1}\n");
  auto r = run_cli({"perplexity", "--file", dir.file("bad.jsonl")});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(contains(r.err, "bad.jsonl:2: expected a JSON object")) << r.err;
}

}  // namespace

// Issues 29 and 30: llama.cpp's -c/--ctx-size and vLLM's --max-model-len set the context length of
// the commands that run the engine (they were refused); longer than the model's is refused by name,
// and a KV pool too small for one full-length sequence is said at start-up with both ways out.
TEST(Cli, MaxModelLenCapsTheContext) {
  auto r = run_cli({"generate", "-p", "In the beginning", "-n", "100", "--ctx-size", "64"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.out, "") << "a refused prompt is not echoed";
  EXPECT_TRUE(contains(r.err, "(512 full-context sequences of 64, --max-model-len)")) << r.err;
  EXPECT_TRUE(contains(r.err,
                       "error: the prompt (4 tokens) plus max_tokens (100) is 104 tokens, more than the context of 64 "
                       "(--max-model-len)\n"))
      << r.err;
  r = run_cli({"generate", "-p", "In the beginning", "-n", "60", "-c", "64", "--ignore-eos", "--temperature", "0"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(contains(r.err, "generated: 60 tokens")) << r.err;
  r = run_cli({"generate", "-p", "hi", "--max-model-len", "5000"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(contains(
      r.err, "error: --max-model-len 5000: more than the model's context of 1024 tokens (max_position_embeddings)\n"))
      << r.err;
  r = run_cli({"generate", "-p", "hi", "-n", "4", "--kv-cache-memory", "0.001"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(
      contains(r.err,
               "warning: the KV cache holds 128 tokens, less than one sequence of the full context (1024): longer "
               "requests will be refused. Raise --kv-cache-memory, or lower --max-model-len to 128 or less\n"))
      << r.err;
  r = run_cli({"tokenize", "-c", "64"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_EQ(
      r.err,
      "error: -c is not a flag of tokenize: the context length is set where the engine runs: generate, chat, serve "
      "and bench take --max-model-len\n");
}

// Issue 28: the demo model's path was compiled in; a program copied out of its build finds the
// models/demo of the checkout it sits in.
TEST(Cli, TheDemoModelIsFoundFromTheProgramsPlace) {
  test::ScratchDir dir;
  std::filesystem::create_directories(dir.path() / "out/of/tree");
  std::filesystem::copy_file(NANOSERVE_BINARY, dir.path() / "out/of/tree/nanoserve");
  test::copy_dir(test::demo_model_dir(), (dir.path() / "models/demo").string());
  const std::string command = (dir.path() / "out/of/tree/nanoserve").string() + " generate -p Hi -n 1 2>&1";
  FILE* pipe = popen(command.c_str(), "r");
  ASSERT_NE(pipe, nullptr);
  std::string out;
  char buffer[4096];
  for (size_t n; (n = fread(buffer, 1, sizeof buffer, pipe)) > 0;) out.append(buffer, n);
  EXPECT_EQ(pclose(pipe), 0) << out;
  EXPECT_TRUE(contains(out, "loaded " + (dir.path() / "models/demo").string() + " (llama family")) << out;
}

// Issue 30: every run loaded cuBLAS, cuBLASLt and NCCL at start (0.5 s cold, 200 MB mapped), GPU or
// not. They come with the CUDA plugin, loaded only for --device cuda; the dynamic loader's own log
// (LD_DEBUG=files) lists every object a CPU run opens.
TEST(Cli, ACpuRunLoadsNoCudaLibrary) {
  const auto r = run_cli({"generate", "-p", "In the beginning", "-n", "2"}, "", {"LD_DEBUG=files"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  for (const char* library : {"libcudart", "libcublas", "libnccl", "libnanoserve_cuda"}) {
    EXPECT_FALSE(contains(r.err, library)) << library << " was loaded:\n" << r.err.substr(0, 4000);
  }
#ifdef NANOSERVE_CUDA
  // and --device cuda loads them (the GPU may be missing: the plugin's error then names it)
  const auto gpu =
      run_cli({"generate", "--device", "cuda", "-p", "In the beginning", "-n", "2"}, "", {"LD_DEBUG=files"});
  EXPECT_TRUE(contains(gpu.err, "libnanoserve_cuda.so") && contains(gpu.err, "libcublas")) << gpu.err.substr(0, 4000);
#endif
}

}  // namespace nanoserve
