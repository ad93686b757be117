#include "model/loader.h"

#include <algorithm>
#include <filesystem>
#include <set>

#include "backend/cpu/cpu_backend.h"
#include "util/error.h"
#include "util/json_fields.h"
#include "util/progress.h"

namespace nanoserve {

namespace fs = std::filesystem;

namespace {

bool has_suffix(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// The view of part [offset, offset + size) of a tensor's output dimension, or of slice `offset` of
// a stacked [count, out, in] tensor.
TensorView part_view(const TensorView& t, bool in_out, int64_t offset, int64_t size) {
  if (t.shape.size() == 3) {
    TensorView v = t;
    v.shape = {t.shape[1], t.shape[2]};
    v.data += dtype_bytes(t.dtype, offset * t.shape[1] * t.shape[2]);
    v.nbytes = static_cast<size_t>(dtype_bytes(t.dtype, t.shape[1] * t.shape[2]));
    return v;
  }
  if (t.shape.size() == 1) return elements_of(t, offset, size);
  if (!in_out) return rows_of(t, offset, size);  // rows of [out, in]
  // Columns of [in, out]: a column range of quantized blocks would start mid-block.
  if (is_quantized(t.dtype)) fail("{}: a {} tensor cannot be split by columns", t.name, dtype_name(t.dtype));
  return columns_of(t, offset, size);
}

// The file's tensor for a slot: by its name, or by its name without the family's optional prefix.
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
  if (!t) fail("{}: missing from the checkpoint (expected shape {})", slot.file_name, shape_str(slot.shape));
  if (t->dtype == DType::I64) fail("{}: dtype I64, expected a float or quantized weight type", slot.file_name);
  if (t->shape != slot.shape) {
    fail("{}: shape {}, expected {} ({})", slot.file_name, shape_str(t->shape), shape_str(slot.shape),
         slot.shape_reason);
  }
  if (slot.parts.size() == 1 && t->shape.size() < 3) {
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

std::vector<const MappedFile*> mapped_files(const Model& model) {
  std::vector<const MappedFile*> files;
  if (model.gguf) files.push_back(&model.gguf->file());
  if (model.checkpoint) {
    for (const auto& f : model.checkpoint->files()) files.push_back(&f->file());
  }
  return files;
}

Model load_hf_directory(const std::string& directory, const LoadOptions& options) {
  if (!fs::is_directory(directory)) fail("{}: not a model directory or GGUF file", directory);
  const std::string config_path = (fs::path(directory) / "config.json").string();
  Model model;
  auto config_json = read_json_file(config_path);
  if (!config_json.is_object() || !config_json.contains("model_type") || !config_json["model_type"].is_string()) {
    fail("{}: missing field 'model_type' (a string naming the architecture)", config_path);
  }
  const ArchFamily& family = with_context(
      config_path, [&]() -> const ArchFamily& { return find_family(config_json["model_type"].get<std::string>()); });
  if (family.normalize_config) family.normalize_config(config_json);
  model.config = parse_model_config(config_json, config_path);
  apply_generation_config(model.config, (fs::path(directory) / "generation_config.json").string());
  model.checkpoint = std::make_unique<HfCheckpoint>(directory);
  model.tensors = model.checkpoint->tensors();
  check_layer_count(model.config, model.tensors, config_path);
  model.arch = family.describe(config_json, model.config, config_path);
  model.names = *family.names;
  model.pooling = read_pooling(directory);
  // Embedding models ship the base model's weights: an untied head that is absent is not needed.
  if (model.pooling && !model.config.tied_embeddings && !model.tensors.count(model.names.lm_head)) {
    model.config.has_lm_head = false;
  }
  with_context(directory, [&] {
    std::vector<std::string> ignorable = family.names->ignored_suffixes;
    if (model.config.tied_embeddings) ignorable.push_back(family.names->lm_head);  // HF ignores it too
    bind_weights(model, ignorable, family.names->optional_prefix);
  });
  if (options.prefetch) prefetch_weights(model);
  return model;
}

}  // namespace

// Every expert of every layer holds at least one value of some tensor in the file: counts beyond
// that are a corrupt config, refused before anything is sized by them.
static void check_counts_against_file(const Model& model) {
  uint64_t values = 0;
  for (const auto& [name, t] : model.tensors)
    values = checked_add(values, static_cast<uint64_t>(t.numel()), "tensor sizes");
  const auto layers = static_cast<uint64_t>(model.config.layers);
  const auto experts = static_cast<uint64_t>(std::max<int64_t>(model.arch.moe.experts, 0));
  if (experts > values / std::max<uint64_t>(layers, 1)) {
    fail("{} experts in each of {} layers with only {} weight values in the checkpoint", experts, layers, values);
  }
}

void check_layer_count(const ModelConfig& config, const std::map<std::string, TensorView>& tensors,
                       const std::string& source) {
  if (static_cast<uint64_t>(config.layers) > tensors.size()) {
    fail("{}: num_hidden_layers {} with only {} tensors in the checkpoint", source, config.layers, tensors.size());
  }
}

void bind_weights(Model& model, const std::vector<std::string>& ignorable_suffixes,
                  const std::string& optional_prefix) {
  check_counts_against_file(model);
  auto slots = weight_slots(model.weights, model.config, model.arch, model.names);
  std::set<std::string> used;
  for (const auto& slot : slots) {
    std::string found_as;
    const TensorView* t = find_tensor(model.tensors, slot.file_name, optional_prefix, &found_as);
    bind(slot, t);
    used.insert(found_as);
  }
  if (model.config.tied_embeddings) {
    model.weights.lm_head.weight = model.weights.embed;  // an alias: same bytes, never a copy
    model.weights.lm_head.weight.name = "lm_head";
  }
  number_weights(model.weights);
  for (const auto& [name, _] : model.tensors) {
    if (used.count(name)) continue;
    bool ignorable = false;
    for (const auto& suffix : ignorable_suffixes) ignorable |= has_suffix(name, suffix);
    if (!ignorable) {
      fail("{}: unexpected tensor, not a weight of a {}-layer {} model", name, model.config.layers, model.arch.family);
    }
    model.ignored_tensors.push_back(name);
  }
}

void prefetch_weights(const Model& model) {
  const auto files = mapped_files(model);
  const std::set<std::string> ignored(model.ignored_tensors.begin(), model.ignored_tensors.end());
  std::vector<const TensorView*> weights;
  uint64_t total = 0;
  for (const auto& [name, t] : model.tensors) {
    if (ignored.count(name)) continue;
    weights.push_back(&t);
    total += t.nbytes;
  }
  ProgressBar bar("loading", total);
  for (const TensorView* t : weights) {
    for (const auto* file : files) {
      const uint8_t* begin = file->data();
      if (t->data >= begin && t->data < begin + file->size())
        file->prefetch(static_cast<size_t>(t->data - begin), t->nbytes);
    }
    bar.advance(t->nbytes);
  }
}

std::unique_ptr<Backend> make_backend(const std::string& device, const Model& model, const BackendOptions& options) {
  return make_backend(device, weight_set(model.weights), options);
}

std::unique_ptr<Backend> make_cpu_backend(const Model& model) { return make_cpu_backend(weight_set(model.weights)); }

Model load_model(const std::string& path, const LoadOptions& options) {
  if (is_gguf_path(path)) return load_gguf_model(path, options);
  return load_hf_directory(path, options);
}

}  // namespace nanoserve
