// Text generation: the KV cache reproduces full recomputation (logits and tokens) for a
// GPT-2-style model (learned positions, LayerNorm, tied embeddings) and a LLaMA-style one
// (RoPE, RMSNorm, SwiGLU, GQA); top-k = 1 is greedy; fixed seeds reproduce; eod stops; the
// cache and position limits are clear errors.
#include <gtest/gtest.h>

#include "mcore/comm/local_backend.h"
#include "mcore/inference/inference_context.h"
#include "mcore/inference/text_generation.h"
#include "mcore/models/presets.h"
#include "mcore/tensor/factory.h"
#include "tests/common/test_util.h"

namespace mcore::inference {
namespace {

constexpr int64_t kVocab = 211, kMaxSeq = 64;

std::unique_ptr<models::GPTModel> make_model(const std::string& preset) {
  const models::ModelPreset& p = models::get_preset(preset);
  transformer::TransformerConfig c = p.config;
  c.num_layers = 3;
  c.hidden_dropout = 0.1;  // eval mode must switch these off
  c.attention_dropout = 0.1;
  c.init_method_std = 0.1;  // peaked logits: greedy choices far from ties
  models::GPTModelOptions o;
  o.share_embeddings_and_output_weights = p.share_embeddings_and_output_weights;
  o.tp_group = comm::make_local_group();
  return std::make_unique<models::GPTModel>(c, transformer::get_gpt_layer_local_spec(), kVocab,
                                            kMaxSeq, o);
}

std::vector<int64_t> prompt_ids(int64_t n) {
  std::vector<int64_t> v;
  for (int64_t i = 0; i < n; ++i) v.push_back((i * 37 + 11) % kVocab);
  return v;
}

Tensor ids_tensor(const std::vector<int64_t>& ids) {
  Tensor t = empty({1, static_cast<int64_t>(ids.size())}, DType::I64);
  std::copy(ids.begin(), ids.end(), t.data<int64_t>());
  return t;
}

class TextGeneration : public ::testing::TestWithParam<std::string> {};

// Prefill then decode one token at a time: every step's logits equal the last row of a full
// forward over the sequence so far. 1e-5: float32, only the summation order of attention over
// keys differs (blocked vs one row).
TEST_P(TextGeneration, CachedLogitsEqualFullRecompute) {
  auto model = make_model(GetParam());
  model->eval();
  NoGradGuard no_grad;
  std::vector<int64_t> seq = prompt_ids(7);
  InferenceContext ctx(20, 1);
  Tensor logits = model->forward(ids_tensor(seq), Tensor(), Tensor(), Tensor(), &ctx);
  ctx.increment_sequence_len_offset(7);
  EXPECT_TENSOR_CLOSE(logits, model->forward(ids_tensor(seq)), 1e-5, 1e-5);
  for (int step = 0; step < 10; ++step) {
    const int64_t token = (step * 53 + 5) % kVocab;
    seq.push_back(token);
    Tensor one = model->forward(ids_tensor({token}), Tensor(), Tensor(), Tensor(), &ctx);
    ctx.increment_sequence_len_offset(1);
    Tensor full = model->forward(ids_tensor(seq));
    EXPECT_TENSOR_CLOSE(one, full.narrow(1, full.size(1) - 1, 1).contiguous(), 1e-5, 1e-5)
        << "step " << step;
  }
}

TEST_P(TextGeneration, CachedTokensEqualRecomputedTokens) {
  auto model = make_model(GetParam());
  for (bool greedy : {true, false}) {
    SCOPED_TRACE(greedy ? "greedy" : "sampled");
    GenerationOptions o;
    o.max_new_tokens = 30;
    o.sampling.greedy = greedy;
    o.sampling.temperature = 0.8;
    o.sampling.top_p = 0.9;
    o.sampling.seed = 7;
    GenerationResult cached = generate(*model, prompt_ids(5), o, kMaxSeq);
    o.use_kv_cache = false;
    GenerationResult full = generate(*model, prompt_ids(5), o, kMaxSeq);
    EXPECT_EQ(cached.tokens, full.tokens);
    EXPECT_EQ(cached.tokens.size(), 30u);
  }
  EXPECT_TRUE(model->is_training());  // generate restores the mode
}

TEST_P(TextGeneration, TopKOneIsGreedyAndSeedsReproduce) {
  auto model = make_model(GetParam());
  GenerationOptions greedy;
  greedy.max_new_tokens = 12;
  greedy.sampling.greedy = true;
  GenerationOptions topk1 = greedy;
  topk1.sampling.greedy = false;
  topk1.sampling.top_k = 1;
  topk1.sampling.temperature = 2.0;
  EXPECT_EQ(generate(*model, prompt_ids(4), greedy, kMaxSeq).tokens,
            generate(*model, prompt_ids(4), topk1, kMaxSeq).tokens);

  GenerationOptions s;
  s.max_new_tokens = 12;
  s.sampling.temperature = 1.5;  // flat enough that two seeds differ somewhere
  s.sampling.seed = 3;
  auto a = generate(*model, prompt_ids(4), s, kMaxSeq).tokens;
  EXPECT_EQ(a, generate(*model, prompt_ids(4), s, kMaxSeq).tokens);
  s.sampling.seed = 4;
  EXPECT_NE(a, generate(*model, prompt_ids(4), s, kMaxSeq).tokens);
}

TEST_P(TextGeneration, StopsAtEod) {
  auto model = make_model(GetParam());
  GenerationOptions o;
  o.max_new_tokens = 10;
  o.sampling.greedy = true;
  auto free_run = generate(*model, prompt_ids(4), o, kMaxSeq).tokens;
  o.eod = free_run[2];
  std::vector<int64_t> streamed;
  o.on_token = [&](int64_t t) { streamed.push_back(t); };
  GenerationResult r = generate(*model, prompt_ids(4), o, kMaxSeq);
  EXPECT_TRUE(r.stopped_on_eod);
  // Stops at the first occurrence of the eod token, which it includes.
  size_t first = 0;
  while (free_run[first] != o.eod) ++first;
  EXPECT_EQ(r.tokens, std::vector<int64_t>(free_run.begin(), free_run.begin() + first + 1));
  EXPECT_EQ(streamed, r.tokens);
}

INSTANTIATE_TEST_SUITE_P(Models, TextGeneration,
                         ::testing::Values("gpt2-tiny", "llama3-tiny", "llama2-tiny"),
                         [](const auto& info) {
                           std::string n = info.param;
                           for (char& ch : n)
                             if (ch == '-') ch = '_';
                           return n;
                         });

TEST(TextGenerationErrors, LimitsAreClearErrors) {
  auto model = make_model("gpt2-tiny");
  GenerationOptions o;
  o.max_new_tokens = 60;
  EXPECT_THROW(
      {
        try {
          generate(*model, prompt_ids(10), o, kMaxSeq);
        } catch (const Error& e) {
          EXPECT_NE(std::string(e.what()).find("max_sequence_length"), std::string::npos);
          throw;
        }
      },
      Error);
  EXPECT_THROW(generate(*model, {}, o, kMaxSeq), Error);
  o.max_new_tokens = 3;
  o.sampling.temperature = 0;
  EXPECT_THROW(generate(*model, prompt_ids(3), o, kMaxSeq), Error);

  KVCache cache(4, 1, 2, 8, DType::F32);
  Tensor k = zeros({3, 1, 2, 8});
  cache.update(k, k, 0);
  EXPECT_THROW(cache.update(k, k, 3), Error);                    // past the end
  EXPECT_THROW(cache.update(zeros({1, 1, 3, 8}), k, 0), Error);  // wrong groups
}

}  // namespace
}  // namespace mcore::inference
