// nanoserve pull against a fake Hub on loopback (tests/hub/fake_hub.py): a full pull in the
// huggingface_hub cache layout, reuse, resume, corruption, gated repositories, offline mode.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <thread>

#include "test_support.h"

namespace nanoserve {
namespace {

namespace fs = std::filesystem;

constexpr const char* kCommit = "0123456789abcdef0123456789abcdef01234567";

class PullTest : public ::testing::Test {
 protected:
  void SetUp() override {
    server_ = fork();
    ASSERT_GE(server_, 0);
    if (server_ == 0) {
      const std::string script = fs::path(__FILE__).parent_path() / "fake_hub.py";
      execlp("python3", "python3", script.c_str(), "--model", test::demo_model_dir().c_str(), "--port-file",
             dir_.file("port").c_str(), "--log", dir_.file("log").c_str(), nullptr);
      _exit(127);
    }
    for (int i = 0; i < 100 && !fs::exists(dir_.file("port")); ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    ASSERT_TRUE(fs::exists(dir_.file("port"))) << "fake hub did not start";
    endpoint_ = "http://127.0.0.1:" + test::read_file(dir_.file("port"));
  }
  void TearDown() override {
    kill(server_, SIGTERM);
    waitpid(server_, nullptr, 0);
  }

  // The fake hub, a private cache, no inherited token; `extra` settings come last and win.
  std::vector<std::string> env(const std::vector<std::string>& extra = {}) const {
    std::vector<std::string> out = {"HF_ENDPOINT=" + endpoint_, "HF_HOME=" + dir_.file("hf"),
                                    "HF_TOKEN=", "HF_HUB_CACHE=", "HF_HUB_OFFLINE="};
    out.insert(out.end(), extra.begin(), extra.end());
    return out;
  }
  test::CommandResult pull(const std::string& repo, const std::vector<std::string>& extra = {}) const {
    return test::run_cli({"pull", repo}, "", env(extra));
  }
  fs::path repo_dir(const std::string& name) const {
    return fs::path(dir_.file("hf")) / "hub" / ("models--nanoserve--" + name);
  }
  size_t requests(const std::string& containing) const {
    size_t n = 0;
    std::string log = test::read_file(dir_.file("log"));
    for (size_t p = log.find(containing); p != std::string::npos; p = log.find(containing, p + 1)) ++n;
    return n;
  }

  test::ScratchDir dir_;
  pid_t server_ = -1;
  std::string endpoint_;
};

TEST_F(PullTest, FullPullInTheSharedCacheLayout) {
  auto r = pull("nanoserve/demo");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const fs::path repo = repo_dir("demo"), snapshot = repo / "snapshots" / kCommit;
  EXPECT_EQ(r.out, snapshot.string() + "\n");
  EXPECT_EQ(test::read_file((repo / "refs" / "main").string()), kCommit);
  const fs::path weights = snapshot / "model.safetensors";
  ASSERT_TRUE(fs::is_symlink(weights));
  EXPECT_EQ(fs::read_symlink(weights).parent_path(), fs::path("../../blobs"));
  EXPECT_EQ(test::read_file(weights.string()), test::read_file(test::demo_model_dir() + "/model.safetensors"));
  for (const char* f : {"config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json"}) {
    EXPECT_TRUE(fs::exists(snapshot / f)) << f;
  }
  EXPECT_FALSE(fs::exists(snapshot / "heldout.jsonl")) << "only the default patterns";
  // The pulled model runs by its Hub id, with the same text as the bundled copy.
  auto by_id = test::run_cli({"generate", "-m", "nanoserve/demo", "-p", "And the LORD", "-n", "8"}, "", env());
  auto local = test::run_cli({"generate", "-p", "And the LORD", "-n", "8"});
  ASSERT_EQ(by_id.exit_code, 0) << by_id.err;
  EXPECT_EQ(by_id.out, local.out);
}

TEST_F(PullTest, IncludeSelectsFiles) {
  auto r = test::run_cli({"pull", "nanoserve/demo@main", "--include", "*.md", "--include", "config.json"}, "", env());
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const fs::path snapshot = repo_dir("demo") / "snapshots" / kCommit;
  EXPECT_TRUE(fs::exists(snapshot / "MODEL_CARD.md"));
  EXPECT_TRUE(fs::exists(snapshot / "config.json"));
  EXPECT_FALSE(fs::exists(snapshot / "model.safetensors"));
}

TEST_F(PullTest, ExistingCacheIsReused) {
  ASSERT_EQ(pull("nanoserve/demo").exit_code, 0);
  const size_t downloads = requests("/resolve/");
  EXPECT_GE(downloads, 5u);
  auto again = pull("nanoserve/demo");
  ASSERT_EQ(again.exit_code, 0) << again.err;
  EXPECT_EQ(requests("/resolve/"), downloads) << "no file downloaded twice";
}

TEST_F(PullTest, InterruptedTransferResumes) {
  auto first = pull("nanoserve/flaky");
  EXPECT_EQ(first.exit_code, 1);
  EXPECT_NE(first.err.find("transfer broke off"), std::string::npos) << first.err;
  EXPECT_NE(first.err.find("run the same command again to resume"), std::string::npos) << first.err;
  const auto size = fs::file_size(test::demo_model_dir() + "/model.safetensors");
  auto second = pull("nanoserve/flaky");
  ASSERT_EQ(second.exit_code, 0) << second.err;
  EXPECT_EQ(requests("model.safetensors bytes=" + std::to_string(size / 2) + "-"), 1u)
      << test::read_file(dir_.file("log"));
  EXPECT_EQ(test::read_file((repo_dir("flaky") / "snapshots" / kCommit / "model.safetensors").string()),
            test::read_file(test::demo_model_dir() + "/model.safetensors"));
}

TEST_F(PullTest, CorruptedBlobIsCaughtByItsHash) {
  auto r = pull("nanoserve/corrupt");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("model.safetensors is corrupted: sha256"), std::string::npos) << r.err;
  for (const auto& entry : fs::directory_iterator(repo_dir("corrupt") / "blobs")) {
    EXPECT_NE(entry.path().extension(), ".incomplete");
    EXPECT_LT(fs::file_size(entry.path()), 1000000u) << "the corrupted weights were not kept";
  }
}

TEST_F(PullTest, GatedRepositoryNeedsAToken) {
  auto denied = pull("nanoserve/gated");
  EXPECT_EQ(denied.exit_code, 1);
  EXPECT_NE(denied.err.find(
                "HTTP 401). The repository is gated or private: accept its license on the Hub, then set HF_TOKEN"),
            std::string::npos)
      << denied.err;
  EXPECT_EQ(pull("nanoserve/gated", {"HF_TOKEN=secret-token"}).exit_code, 0);
  // The token file huggingface_hub writes works too.
  fs::remove_all(repo_dir("gated"));
  test::write_file(dir_.file("hf") + "/token", "secret-token\n");
  EXPECT_EQ(pull("nanoserve/gated").exit_code, 0);
}

TEST_F(PullTest, OfflineModeNeverTouchesTheNetwork) {
  auto missing = pull("nanoserve/demo", {"HF_HUB_OFFLINE=1"});
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_NE(missing.err.find("nanoserve/demo@main is not in the cache"), std::string::npos) << missing.err;
  ASSERT_EQ(pull("nanoserve/demo").exit_code, 0);
  const std::string log = test::read_file(dir_.file("log"));
  auto offline =
      test::run_cli({"generate", "-m", "nanoserve/demo", "-p", "Hi", "-n", "4"}, "", env({"HF_HUB_OFFLINE=1"}));
  EXPECT_EQ(offline.exit_code, 0) << offline.err;
  EXPECT_EQ(pull("nanoserve/demo", {"HF_HUB_OFFLINE=1"}).exit_code, 0);
  EXPECT_EQ(test::read_file(dir_.file("log")), log) << "offline runs made requests";
}

// A cache written by Python's huggingface_hub (same layout, made by hand here) is found offline.
TEST_F(PullTest, FindsACacheWrittenByOtherTools) {
  const fs::path repo = fs::path(dir_.file("hf")) / "hub" / "models--someone--handmade";
  const std::string commit = "feedfacefeedfacefeedfacefeedfacefeedface";
  fs::create_directories(repo / "blobs");
  fs::create_directories(repo / "refs");
  fs::create_directories(repo / "snapshots" / commit);
  test::write_file((repo / "refs" / "main").string(), commit);
  int n = 0;
  for (const char* f : {"config.json", "generation_config.json", "model.safetensors", "tokenizer.json"}) {
    const std::string blob = "blob" + std::to_string(n++);
    fs::copy_file(test::demo_model_dir() + "/" + f, repo / "blobs" / blob);
    fs::create_symlink(fs::path("../../blobs") / blob, repo / "snapshots" / commit / f);
  }
  auto r = test::run_cli({"inspect", "-m", "someone/handmade"}, "", env({"HF_HUB_OFFLINE=1"}));
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("parameters    7344384"), std::string::npos) << r.out;
}

TEST_F(PullTest, UnknownRepository) {
  auto r = pull("nanoserve/nope");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("nanoserve/nope: listing the repository failed (HTTP 404): no such repository"),
            std::string::npos)
      << r.err;
}

}  // namespace
}  // namespace nanoserve
