// Pooling: sentence-transformers' modules.json and 1_Pooling/config.json as real embedding models
// ship them, refusals naming what nanoserve does not compute, and the Pooler fed in chunks.
#include "model/pooling.h"

#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>

#include "test_support.h"
#include "util/error.h"

namespace nanoserve {
namespace {

const char* kModules = R"([
  {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
  {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
  {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"}])";

std::string pooling_config(const std::string& mode_key, const std::string& extra = "") {
  return R"({"word_embedding_dimension": 64, "pooling_mode_cls_token": false, "pooling_mode_mean_tokens": false,
             "pooling_mode_max_tokens": false, "pooling_mode_lasttoken": false, )" +
         extra + "\"" + mode_key + "\": true}";
}

struct Directory {
  test::ScratchDir dir;
  Directory(const std::string& modules, const std::string& pooling) {
    test::write_file(dir.file("modules.json"), modules);
    std::filesystem::create_directories(dir.path() / "1_Pooling");
    test::write_file(dir.file("1_Pooling/config.json"), pooling);
  }
  std::string path() const { return dir.path().string(); }
};

std::string error_of(const std::string& directory) {
  try {
    read_pooling(directory);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(Pooling, ReadsEachModeAndTheNormalizeModule) {
  for (const auto& [key, mode] : {std::pair{"pooling_mode_lasttoken", PoolingMode::Last},
                                  std::pair{"pooling_mode_mean_tokens", PoolingMode::Mean},
                                  std::pair{"pooling_mode_cls_token", PoolingMode::Cls}}) {
    Directory d(kModules, pooling_config(key));
    const auto pooling = read_pooling(d.path());
    ASSERT_TRUE(pooling) << key;
    EXPECT_EQ(pooling->mode, mode) << key;
    EXPECT_TRUE(pooling->normalize);
  }
  const std::string without_normalize =
      R"([{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
    {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}])";
  Directory plain(without_normalize, pooling_config("pooling_mode_mean_tokens"));
  EXPECT_FALSE(read_pooling(plain.path())->normalize);
}

TEST(Pooling, ADirectoryWithoutModulesHasNone) {
  test::ScratchDir dir;
  EXPECT_FALSE(read_pooling(dir.path().string()));
}

TEST(Pooling, RefusesWhatItDoesNotComputeNamingIt) {
  Directory max(kModules, pooling_config("pooling_mode_max_tokens"));
  EXPECT_NE(error_of(max.path()).find("pooling_mode_max_tokens is not supported"), std::string::npos)
      << error_of(max.path());
  Directory two(kModules, pooling_config("pooling_mode_lasttoken", R"("pooling_mode_mean_tokens": true, )"));
  EXPECT_NE(error_of(two.path()).find("more than one pooling mode"), std::string::npos) << error_of(two.path());
  Directory none(kModules, R"({"word_embedding_dimension": 64})");
  EXPECT_NE(error_of(none.path()).find("no pooling mode is set"), std::string::npos) << error_of(none.path());
  const std::string dense = R"([{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
    {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
    {"idx": 2, "name": "2", "path": "2_Dense", "type": "sentence_transformers.models.Dense"}])";
  Directory with_dense(dense, pooling_config("pooling_mode_lasttoken"));
  EXPECT_NE(
      error_of(with_dense.path()).find("module 2 (sentence_transformers.models.Dense at 2_Dense) is not supported"),
      std::string::npos)
      << error_of(with_dense.path());
  Directory no_pooling(R"([{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"}])",
                       "{}");
  EXPECT_NE(error_of(no_pooling.path()).find("no Pooling module"), std::string::npos) << error_of(no_pooling.path());
  Directory broken("{", "{}");
  EXPECT_NE(error_of(broken.path()).find("modules.json"), std::string::npos) << error_of(broken.path());
}

// A prompt of 7 tokens with 3 hidden values each, fed in chunks of 3, 3 and 1 as prefill runs them.
TEST(Pooling, ThePoolerFedInChunksPoolsTheWholePrompt) {
  constexpr int64_t hidden = 3, length = 7;
  std::vector<float> states(length * hidden);
  for (size_t i = 0; i < states.size(); ++i)
    states[i] = static_cast<float>(i % 5) - 1.5f + 0.25f * static_cast<float>(i);
  const auto feed = [&](Pooler& pooler) {
    for (int64_t first : {0, 3, 6}) {
      const int64_t count = std::min<int64_t>(3, length - first);
      const PooledRows rows = pooler.wants(first, count);
      const int64_t from = rows == PooledRows::Last ? first + count - 1 : first;  // what the forward pass returns
      pooler.add(first, count, states.data() + from * hidden);
    }
    return pooler.result();
  };
  Pooler mean({PoolingMode::Mean, false}, hidden, length), last({PoolingMode::Last, false}, hidden, length),
      cls({PoolingMode::Cls, false}, hidden, length);
  EXPECT_EQ(last.wants(0, 3), PooledRows::None);
  EXPECT_EQ(last.wants(6, 1), PooledRows::Last);
  EXPECT_EQ(cls.wants(3, 3), PooledRows::None);
  const std::vector<float> m = feed(mean), l = feed(last), c = feed(cls);
  for (int64_t i = 0; i < hidden; ++i) {
    double sum = 0;
    for (int64_t t = 0; t < length; ++t) sum += states[t * hidden + i];
    EXPECT_NEAR(m[i], sum / length, 1e-6);
    EXPECT_EQ(l[i], states[(length - 1) * hidden + i]);
    EXPECT_EQ(c[i], states[i]);
  }
  // Fed again from position 0 (a preempted sequence recomputed), it starts over.
  EXPECT_EQ(feed(mean), m);
  Pooler normalized({PoolingMode::Mean, true}, hidden, length);
  const std::vector<float> n = feed(normalized);
  const double norm = std::sqrt(double(m[0]) * m[0] + double(m[1]) * m[1] + double(m[2]) * m[2]);
  for (int64_t i = 0; i < hidden; ++i) EXPECT_NEAR(n[i], m[i] / norm, 1e-6);
}

}  // namespace
}  // namespace nanoserve
