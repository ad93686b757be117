// Pooling: how an embedding model turns a sequence's final hidden states into one vector, as
// sentence-transformers directories describe it (modules.json: Transformer, then Pooling, then
// optionally Normalize), and the Pooler that does it chunk by chunk as a prompt is prefilled.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace nanoserve {

enum class PoolingMode {
  Last,  // the last token's state (decoder embedding models: Qwen3-Embedding, gte-Qwen2)
  Mean,  // the mean over every token
  Cls,   // the first token's state
};

struct Pooling {
  PoolingMode mode = PoolingMode::Last;
  bool normalize = true;  // a Normalize module: the vector scaled to unit L2 norm
};

const char* pooling_mode_name(PoolingMode mode);  // "last", "mean", "cls"
std::optional<PoolingMode> pooling_mode_named(std::string_view name);

// The pooling of a sentence-transformers directory: nullopt when it has no modules.json. Throws
// Error naming the file for what nanoserve does not compute (max pooling, a Dense module, ...).
std::optional<Pooling> read_pooling(const std::string& directory);

// Which final hidden rows of a prefill chunk the pooling reads.
enum class PooledRows { None, Last, All };

// One sequence's pooling, fed the chunks of its prompt in order as they are computed.
class Pooler {
 public:
  Pooler(Pooling pooling, int64_t hidden, int64_t length);

  // The rows it needs of chunk [first, first + count).
  PooledRows wants(int64_t first, int64_t count) const;
  // Those rows, [rows, hidden]. A chunk at position 0 starts over: a preempted sequence is
  // recomputed from its start.
  void add(int64_t first, int64_t count, const float* rows);
  // The embedding [hidden], once the prompt's last chunk is in.
  std::vector<float> result() const;

 private:
  Pooling pooling_;
  int64_t hidden_, length_;
  std::vector<double> sum_;  // [hidden]: the mean's running sum, or the state kept
};

// Scales v to unit L2 norm (a zero vector stays zero).
void normalize_l2(std::vector<float>& v);

}  // namespace nanoserve
