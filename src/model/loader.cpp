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

// The view of part [offset, offset + size) of a tensor's output dimension.
TensorView part_view(const TensorView& t, bool in_out, int64_t offset, int64_t size) {
  TensorView v = t;
  const auto esize = static_cast<int64_t>(dtype_size(t.dtype));
  if (t.shape.size() == 1) {
    v.shape = {size};
    v.data += offset * esize;
  } else if (!in_out) {  // rows of [out, in]
    v.shape = {size, t.shape[1]};
    v.data += offset * t.shape[1] * esize;
  } else {  // columns of [in, out]: rows keep the stride of the whole matrix
    v.shape = {t.shape[0], size};
    v.data += offset * esize;
    v.row_stride = t.shape[1];
  }
  v.nbytes = static_cast<size_t>(v.shape[0] * (v.shape.size() == 1 ? 1 : v.stride()) * esize);
  return v;
}

// The checkpoint's tensor for a slot: by its name, or by its name without the family's optional prefix.
const TensorView* find_tensor(const std::map<std::string, TensorView>& on_disk, const std::string& name,
                              const std::string& optional_prefix, std::string* found_as) {
  auto it = on_disk.find(name);
  if (it == on_disk.end() && !optional_prefix.empty() && name.rfind(optional_prefix, 0) == 0) {
    it = on_disk.find(name.substr(optional_prefix.size()));
  }
  if (it == on_disk.end()) return nullptr;
  *found_as = it->first;
  return &it->second;
}

void bind(const WeightSlot& slot, const TensorView* t) {
  if (!t) fail("{}: missing from the checkpoint (expected shape {})", slot.hf_name, shape_str(slot.shape));
  if (!is_float(t->dtype)) fail("{}: dtype {}, expected F32, F16 or BF16", slot.hf_name, dtype_name(t->dtype));
  if (t->shape != slot.shape) {
    fail("{}: shape {}, expected {} ({})", slot.hf_name, shape_str(t->shape), shape_str(slot.shape), slot.shape_reason);
  }
  if (slot.parts.size() == 1) {
    *slot.parts[0].target = *t;
    slot.parts[0].target->name = slot.parts[0].name;
    return;
  }
  int64_t offset = 0;
  for (const auto& part : slot.parts) {
    *part.target = part_view(*t, slot.in_out, offset, part.size);
    part.target->name = part.name;
    offset += part.size;
  }
}

void prefetch_weights(const std::vector<const TensorView*>& tensors, const HfCheckpoint& checkpoint) {
  uint64_t total = 0;
  for (const auto* t : tensors) total += t->nbytes;
  ProgressBar bar("loading", total);
  for (const auto* t : tensors) {
    for (const auto& file : checkpoint.files()) {
      const uint8_t* begin = file->file().data();
      if (t->data >= begin && t->data < begin + file->file().size()) {
        file->file().prefetch(static_cast<size_t>(t->data - begin), t->nbytes);
      }
    }
    bar.advance(t->nbytes);
  }
}

}  // namespace

Model load_model(const std::string& directory, const LoadOptions& options) {
  if (!fs::is_directory(directory)) fail("{}: not a model directory", directory);
  const std::string config_path = (fs::path(directory) / "config.json").string();
  Model model;
  auto config_json = read_json_file(config_path);
  if (!config_json.is_object() || !config_json.contains("model_type") || !config_json["model_type"].is_string()) {
    fail("{}: missing field 'model_type' (a string naming the architecture)", config_path);
  }
  const ArchFamily& family = with_context(config_path, [&]() -> const ArchFamily& {
    return find_family(config_json["model_type"].get<std::string>());
  });
  if (family.normalize_config) family.normalize_config(config_json);
  model.config = parse_model_config(config_json, config_path);
  apply_generation_config(model.config, (fs::path(directory) / "generation_config.json").string());
  model.arch = family.describe(config_json, model.config, config_path);
  model.checkpoint = std::make_unique<HfCheckpoint>(directory);

  with_context(directory, [&] {
    const auto& on_disk = model.checkpoint->tensors();
    auto slots = weight_slots(model.weights, model.config, model.arch, *family.names);
    std::set<std::string> used;
    std::vector<const TensorView*> bound;
    for (const auto& slot : slots) {
      std::string found_as;
      const TensorView* t = find_tensor(on_disk, slot.hf_name, family.names->optional_prefix, &found_as);
      bind(slot, t);
      used.insert(found_as);
      bound.push_back(t);
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
    if (options.prefetch) prefetch_weights(bound, *model.checkpoint);
  });
  return model;
}

}  // namespace nanoserve
