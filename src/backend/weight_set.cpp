#include "backend/weight_set.h"

#include "util/error.h"

namespace nanoserve {

namespace {

template <class Entry>
const Entry& entry(const std::vector<Entry>& entries, const Entry& asked, const char* kind) {
  const TensorView& view = asked.weight;
  if (asked.id < 0 || static_cast<size_t>(asked.id) >= entries.size()) {
    fail("{}: {} handle {} is not among the {} this backend was made with", view.name, kind, asked.id, entries.size());
  }
  const Entry& found = entries[static_cast<size_t>(asked.id)];
  if (found.weight.data != view.data || found.weight.shape != view.shape) {
    fail("{}: {} handle {} names {} in this backend (a view of another model's weights?)", view.name, kind, asked.id,
         found.weight.name);
  }
  return found;
}

}  // namespace

const Linear& WeightSet::at(const Linear& linear) const { return entry(linears, linear, "linear"); }
const Norm& WeightSet::at(const Norm& norm) const { return entry(norms, norm, "norm"); }

}  // namespace nanoserve
