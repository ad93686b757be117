// A backend's forward step (Backend::begin_step): the Step owns the layout the ops read, however it
// moves, and the ops refuse to run once it is gone.
#include <gtest/gtest.h>

#include "backend/backend.h"
#include "backend/cpu/ops.h"
#include "model/loader.h"
#include "test_support.h"

namespace nanoserve {
namespace {

TEST(Step, OwnsTheLayoutTheOpsReadUntilItGoes) {
  const Model model = load_model(test::fixture("tinyllama"));
  const auto backend = make_cpu_backend(model);
  const int64_t hidden = model.config.hidden_size;
  const std::vector<int32_t> blocks = {0};
  const Buffer out = backend->floats(2 * hidden);  // [2, hidden]
  {
    StepLayout layout;
    layout.tokens = 2;
    layout.token_ids = {7, 2};
    layout.positions = {0, 1};
    layout.sequences = {{0, 2, 0, blocks}};
    Step first = backend->begin_step(std::move(layout), 0);
    const Step moved = std::move(first);  // the layout stays where the backend reads it
    EXPECT_EQ(moved.layout().token_ids, (std::vector<int32_t>{7, 2}));
    backend->embed(Backend::Ids::Tokens, out.floats());
  }
  std::vector<float> row(static_cast<size_t>(hidden));
  cpu::load_row(model.weights.embed, 2, row.data());
  EXPECT_EQ(std::vector<float>(out.floats() + hidden, out.floats() + 2 * hidden), row);
  EXPECT_EQ(test::error_of([&] { backend->embed(Backend::Ids::Tokens, out.floats()); }),
            "a backend operation ran outside a forward step");
}

}  // namespace
}  // namespace nanoserve
