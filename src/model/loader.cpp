#include "model/loader.h"

#include <filesystem>
#include <set>

#include "util/error.h"
#include "util/json_fields.h"
#include "util/progress.h"

namespace nanoserve {

namespace fs = std::filesystem;

namespace {

bool is_float(DType d) { return d == DType::F32 || d == DType::F16 || d == DType::BF16; }

bool has_suffix(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

void bind(const WeightSlot& slot, const std::map<std::string, TensorView>& on_disk) {
  auto it = on_disk.find(slot.hf_name);
  if (it == on_disk.end()) fail("{}: missing from the checkpoint (expected shape {})", slot.hf_name, shape_str(slot.shape));
  const TensorView& t = it->second;
  if (!is_float(t.dtype)) fail("{}: dtype {}, expected F32, F16 or BF16", slot.hf_name, dtype_name(t.dtype));
  if (t.shape != slot.shape) {
    fail("{}: shape {}, expected {} ({})", slot.hf_name, shape_str(t.shape), shape_str(slot.shape), slot.shape_reason);
  }
  *slot.tensor = t;
  slot.tensor->name = slot.name;
}

void prefetch_weights(const std::vector<WeightSlot>& slots, const HfCheckpoint& checkpoint) {
  uint64_t total = 0;
  for (const auto& s : slots) total += s.tensor->nbytes;
  ProgressBar bar("loading", total);
  for (const auto& s : slots) {
    for (const auto& file : checkpoint.files()) {
      const uint8_t* begin = file->file().data();
      if (s.tensor->data >= begin && s.tensor->data < begin + file->file().size()) {
        file->file().prefetch(static_cast<size_t>(s.tensor->data - begin), s.tensor->nbytes);
      }
    }
    bar.advance(s.tensor->nbytes);
  }
}

}  // namespace

Model load_model(const std::string& directory, const LoadOptions& options) {
  if (!fs::is_directory(directory)) fail("{}: not a model directory", directory);
  const std::string config_path = (fs::path(directory) / "config.json").string();
  Model model;
  const auto config_json = read_json_file(config_path);
  model.config = parse_model_config(config_json, config_path);
  apply_generation_config(model.config, (fs::path(directory) / "generation_config.json").string());
  const ArchFamily& family = with_context(config_path, [&]() -> const ArchFamily& { return find_family(model.config.model_type); });
  model.arch = family.describe(config_json, config_path);
  model.checkpoint = std::make_unique<HfCheckpoint>(directory);

  with_context(directory, [&] {
    const auto& on_disk = model.checkpoint->tensors();
    auto slots = weight_slots(model.weights, model.config, *family.names);
    std::set<std::string> used;
    for (const auto& slot : slots) {
      bind(slot, on_disk);
      used.insert(slot.hf_name);
    }
    if (model.config.tied_embeddings) {
      model.weights.lm_head = model.weights.embed;  // an alias: same bytes, never a copy
      model.weights.lm_head.name = "lm_head";
    }
    for (const auto& [name, _] : on_disk) {
      if (used.count(name)) continue;
      bool ignorable = model.config.tied_embeddings && name == family.names->lm_head;  // HF ignores it too
      for (const auto& suffix : family.names->ignored_suffixes) ignorable |= has_suffix(name, suffix);
      if (!ignorable) {
        fail("{}: unexpected tensor, not a weight of a {}-layer {} model", name, model.config.layers, model.arch.family);
      }
      model.ignored_tensors.push_back(name);
    }
    if (options.prefetch) prefetch_weights(slots, *model.checkpoint);
  });
  return model;
}

}  // namespace nanoserve
