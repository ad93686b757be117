#include "engine/engine.h"

#include <algorithm>
#include <random>

#include "util/error.h"
#include "util/log.h"

namespace nanoserve {

namespace {

int64_t blocks_for(int64_t tokens, int64_t block_size) { return (tokens + block_size - 1) / block_size; }

// An event to a request's listener. A listener that throws (out of memory posting the event) loses
// that event, not the engine thread.
void notify(const EventCallback& callback, const Event& event) noexcept {
  try {
    callback(event);
  } catch (const std::exception& e) {
    log::warning("request {}: an event was lost: {}", event.request_id, e.what());
  }
}

uint64_t sample_seed(const SamplingParams& p, int32_t index) {
  if (!p.seed) return std::random_device{}() * 0x100000001ull + std::random_device{}();
  return *p.seed * 0x9e3779b97f4a7c15ull + static_cast<uint64_t>(index);
}

}  // namespace

int64_t resolve_max_model_len(const EngineOptions& options, const ModelConfig& config) {
  if (options.max_model_len > config.max_positions) {
    fail("--max-model-len {}: more than the model's context of {} tokens (max_position_embeddings)",
         options.max_model_len, config.max_positions);
  }
  return options.max_model_len > 0 ? options.max_model_len : config.max_positions;
}

Engine::Engine(const TensorParallel& runner, const Tokenizer* tokenizer, const EngineOptions& options)
    : model_(runner.model()),
      tokenizer_(tokenizer),
      sample_vocab_(tokenizer ? std::min<int64_t>(model_.config.vocab_size, tokenizer->vocab_size())
                              : model_.config.vocab_size),
      max_model_len_(resolve_max_model_len(options, model_.config)),  // checked before the KV pool is made
      ranks_(runner),
      caches_(ranks_.make_caches(
          std::max<int64_t>(1, options.kv_cache_bytes / KvCache::bytes_per_block(ranks_.rank_config().kv_shape(),
                                                                                 options.block_size, options.kv_dtype)),
          options.block_size, options.kv_dtype)),
      num_blocks_(caches_[0].num_blocks()),
      blocks_(num_blocks_, options.block_size, options.prefix_caching),
      scheduler_(blocks_, options.limits) {
  stats_.total_blocks = num_blocks_;
  stats_.block_size = options.block_size;
}

Engine::~Engine() { stop(); }

uint64_t Engine::submit(Request request, EventCallback callback) {
  const ModelConfig& c = model_.config;
  const bool embed = request.embed.has_value();
  if (!embed) {
    request.params.validate(sample_vocab_);
    if (!c.has_lm_head) fail("this model has no LM head (an embedding model's weights): it makes embeddings, not text");
  }
  if (request.prompt.empty()) fail("the prompt is empty");
  for (size_t i = 0; i < request.prompt.size(); ++i) {
    if (request.prompt[i] < 0 || request.prompt[i] >= c.vocab_size) {
      fail("prompt token {} at position {} is outside the vocabulary of {}", request.prompt[i], i, c.vocab_size);
    }
  }
  if (!tokenizer_ && !request.params.stop.empty()) fail("stop strings need a tokenizer");
  const auto prompt = static_cast<int64_t>(request.prompt.size());
  const int64_t total = prompt + (embed ? 0 : request.params.max_tokens);
  if (embed && total > max_model_len_)
    fail("the input is {} tokens, more than the context of {}", prompt, max_model_len_);
  if (total > max_model_len_) {
    fail("the prompt ({} tokens) plus max_tokens ({}) is {} tokens, more than {}", prompt, request.params.max_tokens,
         total,
         max_model_len_ < c.max_positions ? fmt::format("the context of {} (--max-model-len)", max_model_len_)
                                          : fmt::format("the model's context of {}", max_model_len_));
  }
  const int64_t block_size = caches_[0].block_size();
  const int64_t needed = blocks_for(total, block_size);
  if (needed > num_blocks_) {
    fail(
        "the prompt ({} tokens) plus max_tokens ({}) needs {} KV blocks of {} tokens, but the pool holds only {} "
        "blocks ({} tokens); raise --kv-cache-memory or lower max_tokens",
        prompt, request.params.max_tokens, needed, block_size, num_blocks_, num_blocks_ * block_size);
  }
  auto state = std::make_shared<RequestState>();
  state->params = std::move(request.params);
  state->callback = std::move(callback);
  auto s = std::make_unique<Sequence>();
  s->request = state;
  s->prompt_len = prompt;
  s->tokens = std::move(request.prompt);
  if (embed) {
    s->pooler = std::make_unique<Pooler>(*request.embed, c.hidden_size, prompt);
  } else {
    prepare_sampling(*s);
  }
  {
    std::lock_guard lock(mutex_);
    state->id = next_id_++;
    inbox_.push_back(std::move(s));
  }
  wake_.notify_one();
  return state->id;
}

// A generation's sampler, detokenizer, stop strings and grammar matcher.
void Engine::prepare_sampling(Sequence& s) {
  const std::shared_ptr<RequestState>& state = s.request;
  s.sampler = std::make_unique<Sampler>(state->params, s.tokens, sample_seed(state->params, 0));
  if (tokenizer_) s.decoder = std::make_unique<StreamDecoder>(*tokenizer_, s.tokens);
  s.stop = StopMatcher(state->params.stop);
  if (state->params.grammar) {
    if (!tokenizer_) fail("structured output (a grammar or JSON schema) needs a tokenizer");
    {
      std::lock_guard lock(mutex_);
      if (!trie_) trie_ = grammar::TokenTrie::of(*tokenizer_);
    }
    if (state->params.grammar_trigger.empty())
      s.matcher = std::make_unique<grammar::Matcher>(state->params.grammar, trie_);
  }
}

void Engine::cancel(uint64_t request_id) {
  {
    std::lock_guard lock(mutex_);
    cancelled_.insert(request_id);
  }
  wake_.notify_one();
}

void Engine::cancel_all() {
  {
    std::lock_guard lock(mutex_);
    cancel_everything_ = true;
  }
  wake_.notify_one();
}

void Engine::drain_inbox() {
  std::deque<std::unique_ptr<Sequence>> incoming;
  std::unordered_set<uint64_t> cancelled;
  bool everything = false;
  {
    std::lock_guard lock(mutex_);
    incoming.swap(inbox_);
    cancelled.swap(cancelled_);
    everything = std::exchange(cancel_everything_, false);
  }
  for (auto& s : incoming) scheduler_.add(std::move(s));
  if (cancelled.empty() && !everything) return;
  for (Sequence* s : scheduler_.all()) {
    if (everything || cancelled.count(s->request->id)) finish(*s, FinishReason::Cancelled, Event{});
  }
}

bool Engine::is_eos(int32_t token) const {
  const auto& eos = model_.config.eos_token_ids;
  return std::find(eos.begin(), eos.end(), token) != eos.end();
}

void Engine::finish(Sequence& s, FinishReason reason, Event event) {
  event.request_id = s.request->id;
  event.index = s.index;
  event.finish = reason;
  if (reason != FinishReason::Cancelled && reason != FinishReason::Error && !s.stop.stopped()) {
    // Text held back for a possible stop string, then an incomplete character, are final now.
    event.text += s.stop.push(s.decoder ? s.decoder->finish() : std::string());
    event.text += s.stop.flush();
  }
  event.prompt_tokens = s.prompt_len;
  event.cached_prompt_tokens = s.cached_prompt_tokens;
  event.completion_tokens = s.generated();
  auto callback = s.request->callback;
  // Samples of an n > 1 request that never forked (cancelled or failed during prefill) end too.
  const int32_t unforked = s.index == 0 && !s.forked ? s.request->params.n - 1 : 0;
  scheduler_.finish(&s);  // s is gone after this
  notify(callback, event);
  for (int32_t i = 1; i <= unforked; ++i) {
    Event sibling;
    sibling.request_id = event.request_id;
    sibling.index = i;
    sibling.finish = reason;
    sibling.error = event.error;
    sibling.prompt_tokens = event.prompt_tokens;
    sibling.cached_prompt_tokens = event.cached_prompt_tokens;
    notify(callback, sibling);
  }
}

// The first sample of an n > 1 request, once its prompt is computed, gets n - 1 siblings that share
// its blocks (copy-on-write protects the partly filled last one).
void Engine::fork_samples(Sequence& first) {
  first.forked = true;
  for (int32_t i = 1; i < first.request->params.n; ++i) {
    auto s = std::make_unique<Sequence>();
    s->request = first.request;
    s->index = i;
    s->tokens = first.tokens;
    s->prompt_len = first.prompt_len;
    s->computed = first.computed;
    s->blocks = first.blocks;
    for (int32_t b : s->blocks) blocks_.retain(b);
    s->published = first.published;
    s->chain_hash = first.chain_hash;
    s->cached_prompt_tokens = first.cached_prompt_tokens;
    s->forked = true;
    s->sampler = std::make_unique<Sampler>(first.request->params, s->tokens, sample_seed(first.request->params, i));
    if (tokenizer_)
      s->decoder =
          std::make_unique<StreamDecoder>(*tokenizer_, std::span(s->tokens).first(static_cast<size_t>(s->prompt_len)));
    s->stop = StopMatcher(first.request->params.stop);
    if (first.matcher) s->matcher = first.matcher->clone();
    s->trigger_tail = first.trigger_tail;
    scheduler_.add_running(std::move(s));
  }
}

void Engine::sample(Sequence& s, std::span<const float> logits) {
  TokenLogprob logprob{};
  logits = logits.first(static_cast<size_t>(sample_vocab_));
  std::vector<float> masked;
  if (s.matcher) {  // refused tokens to -infinity; end of sequence only where the grammar may end
    masked.assign(logits.begin(), logits.end());
    s.matcher->mask(masked, grammar_end_tokens(s));
    logits = masked;
  }
  const int32_t token = s.sampler->sample(logits, &logprob);
  append(s, token, s.request->params.logprobs >= 0 ? &logprob : nullptr);
}

std::span<const int64_t> Engine::grammar_end_tokens(const Sequence& s) const {
  if (s.request->params.ignore_eos) return {};
  return model_.config.eos_token_ids;
}

void Engine::append(Sequence& s, int32_t token, const TokenLogprob* logprob) {
  const SamplingParams& p = s.request->params;
  s.tokens.push_back(token);
  Event event;
  event.request_id = s.request->id;
  event.index = s.index;
  if (logprob) event.logprobs.push_back(*logprob);
  const bool stop_token = std::find(p.stop_token_ids.begin(), p.stop_token_ids.end(), token) != p.stop_token_ids.end();
  if (stop_token || (!p.ignore_eos && is_eos(token))) {
    finish(s, FinishReason::Stop, std::move(event));  // the stop token is not part of the output
    return;
  }
  event.tokens.push_back(token);
  if (s.matcher && !s.matcher->accept(token)) fail("token {} is not allowed by the request's grammar", token);
  if (!s.matcher && !p.grammar_trigger.empty()) watch_trigger(s, token);
  if (s.decoder) event.text = s.stop.push(s.decoder->push(token));
  if (s.stop.stopped() || (s.matcher && s.matcher->finished())) {
    finish(s, FinishReason::Stop, std::move(event));
  } else if (s.generated() >= p.max_tokens || static_cast<int64_t>(s.tokens.size()) >= max_model_len_) {
    finish(s, FinishReason::Length, std::move(event));
  } else {
    notify(s.request->callback, event);
  }
}

// A lazy grammar starts where its trigger appears: the matcher is made then and fed the output from
// the trigger's first byte (the trigger's token may carry bytes before it, which stay free). Bytes
// after the trigger in the same token that the grammar refuses leave the output free, as before.
void Engine::watch_trigger(Sequence& s, int32_t token) {
  const std::string& trigger = s.request->params.grammar_trigger;
  s.trigger_tail += tokenizer_->token_bytes(token, /*skip_special=*/false);
  const size_t at = s.trigger_tail.find(trigger);
  if (at == std::string::npos) {
    if (s.trigger_tail.size() >= trigger.size()) s.trigger_tail.erase(0, s.trigger_tail.size() - (trigger.size() - 1));
    return;
  }
  auto matcher = std::make_unique<grammar::Matcher>(s.request->params.grammar, trie_);
  if (matcher->accept_bytes(std::string_view(s.trigger_tail).substr(at))) s.matcher = std::move(matcher);
  s.trigger_tail.clear();
}

bool Engine::step() {
  drain_inbox();
  const StepPlan step_plan = scheduler_.schedule();
  const std::vector<ScheduledSlice>& plan = step_plan.slices;
  if (plan.empty()) {
    publish_stats(0, 0);  // cancellations may have changed the counts
    return false;
  }
  for (const BlockCopy& copy : step_plan.copies) {
    for (KvCache& cache : caches_) cache.copy_block(copy.from, copy.to);
  }
  std::vector<ScheduledSlice> generating, embedding;
  for (const auto& p : plan) (p.sequence->pooler ? embedding : generating).push_back(p);
  if (!embedding.empty()) embed_step(embedding);
  if (!generating.empty()) generate_step(generating);
  return true;
}

// Embeddings' prefill chunks: the final hidden states their pooling reads, pooled; a sequence whose
// prompt is all computed finishes with its vector.
void Engine::embed_step(const std::vector<ScheduledSlice>& plan) {
  std::vector<SequenceSlice> slices;
  std::vector<int64_t> rows;  // per slice: the hidden rows it asks for
  for (const auto& p : plan) {
    const Sequence& s = *p.sequence;
    const PooledRows wanted = s.pooler->wants(s.computed, p.count);
    const LogitsFor which = wanted == PooledRows::All    ? LogitsFor::AllTokens
                            : wanted == PooledRows::Last ? LogitsFor::LastToken
                                                         : LogitsFor::None;
    slices.push_back({std::span(s.tokens).subspan(static_cast<size_t>(s.computed), static_cast<size_t>(p.count)),
                      s.computed, s.blocks, which, s.prompt_len});
    rows.push_back(wanted == PooledRows::All ? p.count : wanted == PooledRows::Last ? 1 : 0);
  }
  std::vector<float> hidden;  // [rows, hidden_size]
  try {
    hidden = ranks_.forward_hidden(slices, caches_);
  } catch (const std::exception& e) {  // fails the embeddings in this batch, not the engine
    for (const auto& p : plan) {
      Event event;
      event.error = e.what();
      finish(*p.sequence, FinishReason::Error, std::move(event));
    }
    return;
  }
  const int64_t width = model_.config.hidden_size;
  int64_t row = 0, prompt_tokens = 0;
  for (size_t i = 0; i < plan.size(); ++i) {
    Sequence& s = *plan[i].sequence;
    s.pooler->add(s.computed, plan[i].count, hidden.data() + row * width);
    row += rows[i];
    prompt_tokens += plan[i].count;
    scheduler_.computed(s, plan[i].count);
    if (s.computed < s.prompt_len) continue;
    Event event;
    event.embedding = s.pooler->result();
    finish(s, FinishReason::Stop, std::move(event));
  }
  publish_stats(prompt_tokens, 0);
}

void Engine::generate_step(const std::vector<ScheduledSlice>& plan) {
  std::vector<SequenceSlice> slices;
  for (const auto& p : plan) {
    const Sequence& s = *p.sequence;
    slices.push_back({std::span(s.tokens).subspan(static_cast<size_t>(s.computed), static_cast<size_t>(p.count)),
                      s.computed, s.blocks, p.wants_logits ? LogitsFor::LastToken : LogitsFor::None, s.prompt_len});
  }
  // When every sequence picks greedily, the backend picks too and only the token ids come back (no
  // [rows, vocab] copy to the host), among each row's allowed tokens where a grammar or ids past the
  // tokenizer's vocabulary restrict them: the masks, computed meanwhile, go to the device instead.
  const bool greedy = std::all_of(plan.begin(), plan.end(), [](const auto& p) {
    return !p.wants_logits || (p.sequence->sampler->plain_greedy() && p.sequence->request->params.n == 1);
  });
  const bool masked =
      sample_vocab_ < model_.config.vocab_size ||
      std::any_of(plan.begin(), plan.end(), [](const auto& p) { return p.wants_logits && p.sequence->matcher; });
  StepResults results;
  const auto step_time = profile_.time("generate step");
  auto masks = prepare_masks(plan);
  const AllowedTokens allowed = [&] {
    {
      const auto t = profile_.time("mask wait");
      for (auto& m : masks) m.wait();
    }
    const auto t = profile_.time("mask fill");
    fill_allowed(plan, results);
    return std::span<const uint64_t>(results.allowed);
  };
  try {
    const auto t = profile_.time("forward");
    if (greedy) {
      results.picks = ranks_.forward_greedy(slices, caches_, masked ? allowed : AllowedTokens());
    } else {
      results.logits = ranks_.forward(slices, caches_);
    }
  } catch (const std::exception& e) {  // fails the requests in this batch, not the engine
    for (auto& m : masks) m.wait();
    for (const auto& p : plan) {
      Event event;
      event.error = e.what();
      finish(*p.sequence, FinishReason::Error, std::move(event));
    }
    return;
  }
  for (auto& m : masks) m.wait();  // errors surface again, per sequence, when it samples
  const auto t = profile_.time("sampling");
  process_logits(plan, greedy, results);
}

void Engine::fill_allowed(const std::vector<ScheduledSlice>& plan, StepResults& results) const {
  const int64_t words = allowed_words(model_.config.vocab_size);
  results.allowed.clear();
  results.refusals.clear();
  for (const auto& p : plan) {
    if (!p.wants_logits) continue;
    const Sequence& s = *p.sequence;
    results.allowed.resize(results.allowed.size() + static_cast<size_t>(words));
    results.refusals.emplace_back();
    const std::span<uint64_t> row = std::span(results.allowed).last(static_cast<size_t>(words));
    if (!s.matcher) {  // the tokenizer's ids, not the padding rows past them
      std::fill_n(row.begin(), sample_vocab_ / 64, ~uint64_t{0});
      if (sample_vocab_ % 64) row[static_cast<size_t>(sample_vocab_ / 64)] = (uint64_t{1} << (sample_vocab_ % 64)) - 1;
      continue;
    }
    try {
      s.matcher->allowed_bits(row.first(static_cast<size_t>(allowed_words(sample_vocab_))), sample_vocab_,
                              grammar_end_tokens(s));
    } catch (const std::exception& e) {
      results.refusals.back() = e.what();
    }
  }
}

std::vector<std::future<void>> Engine::prepare_masks(const std::vector<ScheduledSlice>& plan) {
  std::vector<grammar::Matcher*> matchers;
  for (const auto& p : plan) {
    if (p.wants_logits && p.sequence->matcher) matchers.push_back(p.sequence->matcher.get());
  }
  std::vector<std::future<void>> futures;
  if (matchers.empty()) return futures;
  const size_t workers = std::min<size_t>(matchers.size(), kMaskThreads);
  for (size_t w = 0; w < workers; ++w) {
    futures.push_back(std::async(std::launch::async, [w, workers, list = matchers] {
      for (size_t i = w; i < list.size(); i += workers) {
        try {
          list[i]->allowed();
        } catch (const std::exception&) {  // reported when the sequence samples
        }
      }
    }));
  }
  return futures;
}

// Each scheduled sequence takes its row: its computed positions advance and, where it wanted
// logits, it samples. An error there (a token the tokenizer cannot decode, out of memory) fails
// that sequence alone; the sequences before it have their tokens, the ones after it go on.
void Engine::process_logits(const std::vector<ScheduledSlice>& plan, bool greedy, const StepResults& results) {
  const int64_t vocab = model_.config.vocab_size;
  int64_t row = 0, prompt_tokens = 0, generated = 0;
  for (const auto& p : plan) {
    Sequence& s = *p.sequence;
    prompt_tokens += std::max<int64_t>(0, std::min(s.computed + p.count, s.prompt_len) - s.computed);
    scheduler_.computed(s, p.count);
    if (!p.wants_logits) continue;
    const int64_t this_row = row++;
    std::vector<Sequence*> samples{&s};
    try {
      if (greedy) {
        if (!results.refusals.empty() && !results.refusals[static_cast<size_t>(this_row)].empty())
          throw Error(results.refusals[static_cast<size_t>(this_row)]);
        const int32_t token = results.picks[static_cast<size_t>(this_row)];
        s.sampler->record(token);
        ++generated;
        append(s, token, nullptr);
        continue;
      }
      std::span<const float> row_logits(results.logits.data() + this_row * vocab, static_cast<size_t>(vocab));
      if (s.request->params.n > 1 && !s.forked) fork_samples(s);
      if (s.generated() == 0 && s.index == 0 && s.request->params.n > 1) {
        for (Sequence* other : scheduler_.all()) {
          if (other->request == s.request && other->index > 0 && other->generated() == 0) samples.push_back(other);
        }
      }
      // Each sample is finished (and gone) by its own error or last token: walk from the back so
      // that a failure names the one that threw.
      while (!samples.empty()) {
        ++generated;
        sample(*samples.back(), row_logits);
        samples.pop_back();
      }
    } catch (const std::exception& e) {
      Event event;
      event.error = e.what();
      finish(samples.empty() ? s : *samples.back(), FinishReason::Error, std::move(event));
    }
  }
  publish_stats(prompt_tokens, generated);
}

void Engine::fail_all(const std::string& message) {
  for (Sequence* s : scheduler_.all()) {
    Event event;
    event.error = message;
    finish(*s, FinishReason::Error, std::move(event));
  }
  publish_stats(0, 0);
}

void Engine::publish_stats(int64_t prompt_tokens, int64_t generated) {
  std::lock_guard lock(mutex_);
  stats_.prompt_tokens_computed += prompt_tokens;
  stats_.generated_tokens += generated;
  stats_.used_blocks = blocks_.used_blocks();
  stats_.peak_used_blocks = std::max(stats_.peak_used_blocks, stats_.used_blocks);
  stats_.running = scheduler_.running();
  stats_.waiting = scheduler_.waiting();
  stats_.prefix_queries = blocks_.prefix_queries();
  stats_.prefix_hits = blocks_.prefix_hits();
  stats_.preemptions = scheduler_.preemptions();
}

void Engine::run_until_idle() {
  while (step()) {}
}

void Engine::start() {
  stopping_ = false;
  loop_ = std::thread([this] {
    while (!stopping_) {
      try {
        if (step()) continue;
      } catch (const std::exception& e) {  // outside the steps' own handling (scheduling ran out of memory)
        log::error("an engine step failed, ending the requests it held: {}", e.what());
        fail_all(fmt::format("the engine step failed: {}", e.what()));
        continue;
      }
      std::unique_lock lock(mutex_);
      wake_.wait(lock, [&] { return stopping_ || !inbox_.empty() || !cancelled_.empty() || cancel_everything_; });
    }
  });
}

void Engine::stop() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  if (loop_.joinable()) loop_.join();
}

EngineStats Engine::stats() const {
  std::lock_guard lock(mutex_);
  return stats_;
}

}  // namespace nanoserve
