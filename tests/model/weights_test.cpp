#include "model/weights.h"

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <set>

#include "model/loader.h"
#include "test_support.h"

namespace nanoserve {
namespace {

// Every present product and norm has the handle of its place in the backend's set; absent ones none.
TEST(WeightHandles, NumberEveryPresentWeightInTheSetsOrder) {
  for (const char* dir : {"tinyllama", "gemma2", "olmoe", "gpt2"}) {
    SCOPED_TRACE(dir);
    const Model m = load_model(test::fixture(dir));
    const WeightSet set = weight_set(m.weights);
    EXPECT_EQ(set.token_embed.data, m.weights.embed.data);
    for (size_t i = 0; i < set.linears.size(); ++i) EXPECT_EQ(set.linears[i].id, static_cast<WeightId>(i));
    for (size_t i = 0; i < set.norms.size(); ++i) EXPECT_EQ(set.norms[i].id, static_cast<WeightId>(i));
    std::set<const uint8_t*> products;
    for (const LayerWeights& l : m.weights.layers) {
      for (const Linear* linear : linears_of(l)) {
        if (!linear->weight.data) {
          EXPECT_EQ(linear->id, -1);
          continue;
        }
        EXPECT_EQ(&set.at(*linear).weight.data[0], linear->weight.data) << linear->weight.name;
        products.insert(linear->weight.data);
      }
    }
    EXPECT_EQ(products.size() + 1, set.linears.size()) << "every layer's products and the LM head";
    EXPECT_EQ(set.at(m.weights.lm_head).weight.name, m.weights.lm_head.weight.name);
  }
}

// A handle is only good on the backend made from its own model's set: a view of other weights is
// refused with a message, never run with the wrong copy.
TEST(WeightHandles, ASetRefusesAnotherModelsView) {
  const Model tiny = load_model(test::fixture("tinyllama"));
  const Model demo = load_model(test::demo_model_dir());
  const WeightSet set = weight_set(demo.weights);
  const Linear& q = tiny.weights.layers[0].q;
  ASSERT_LT(q.id, static_cast<WeightId>(set.linears.size()));
  EXPECT_EQ(test::error_of([&] { set.at(q); }),
            fmt::format("layers.0.attn.q: linear handle {} names layers.0.attn.q in this backend (a view of another "
                        "model's weights?)",
                        q.id));
  Linear unnumbered = demo.weights.layers[0].q;
  unnumbered.id = -1;
  EXPECT_EQ(test::error_of([&] { set.at(unnumbered); }),
            fmt::format("layers.0.attn.q: linear handle -1 is not among the {} this backend was made with",
                        set.linears.size()));
}

}  // namespace
}  // namespace nanoserve
