#include "mcore/inference/text_generation.h"

#include "mcore/inference/inference_context.h"
#include "mcore/tensor/factory.h"

namespace mcore::inference {

namespace {

// Token ids [1, n] on `device` (the model's).
Tensor ids_tensor(const int64_t* ids, int64_t n, Device device) {
  Tensor t = empty({1, n}, DType::I64);
  std::copy(ids, ids + n, t.data<int64_t>());
  return t.to(device);
}

// The logits of the last position of a [1, s, V] forward, as float32 on the host (sampling
// runs there).
Tensor last_logits(const Tensor& logits) {
  return logits.narrow(1, logits.size(1) - 1, 1).to(DType::F32).contiguous().to(Device::cpu());
}

}  // namespace

GenerationResult generate(models::GPTModel& model, const std::vector<int64_t>& prompt,
                          const GenerationOptions& o, int64_t max_sequence_length) {
  MCORE_CHECK(!prompt.empty()) << "generate: the prompt must hold at least one token";
  MCORE_CHECK(o.max_new_tokens >= 0)
      << "generate: max_new_tokens must be >= 0, got " << o.max_new_tokens;
  validate(o.sampling);
  const int64_t total = static_cast<int64_t>(prompt.size()) + o.max_new_tokens;
  const bool learned = model.config().position_embedding_type == "learned_absolute";
  MCORE_CHECK(!learned || total <= max_sequence_length)
      << "generate: prompt (" << prompt.size() << " tokens) + max_new_tokens (" << o.max_new_tokens
      << ") = " << total << " exceeds the model's max_sequence_length (" << max_sequence_length
      << ") of learned position embeddings";

  NoGradGuard no_grad;
  const bool was_training = model.is_training();
  model.eval();
  GenerationResult r;
  r.prompt_length = static_cast<int64_t>(prompt.size());
  std::vector<int64_t> seq = prompt;
  InferenceContext ctx(std::max<int64_t>(total, 1), 1);
  const auto params = model.parameters();
  const Device device = params.empty() ? Device::cpu() : params.front()->device();

  for (int64_t step = 0; step < o.max_new_tokens; ++step) {
    Tensor logits;
    if (o.use_kv_cache) {
      // Prefill feeds the whole prompt; afterwards only the newest token.
      const int64_t start = ctx.sequence_len_offset();
      const int64_t n = static_cast<int64_t>(seq.size()) - start;
      logits = model.forward(ids_tensor(seq.data() + start, n, device), Tensor(), Tensor(),
                             Tensor(), &ctx);
      ctx.increment_sequence_len_offset(n);
    } else {
      logits = model.forward(ids_tensor(seq.data(), static_cast<int64_t>(seq.size()), device));
    }
    Tensor last = last_logits(logits);
    const int64_t model_vocab = last.size(2);
    const int64_t vocab = o.vocab_size > 0 ? o.vocab_size : model_vocab;
    MCORE_CHECK(vocab <= model_vocab)
        << "generate: the model returned logits over " << model_vocab << " tokens but the "
        << "vocabulary has " << vocab << ": build a tensor-parallel model with "
        << "parallel_output = false so the logits are gathered";
    const int64_t token =
        sample_token(last.data<float>(), vocab, o.sampling, 0, static_cast<uint64_t>(step));
    seq.push_back(token);
    r.tokens.push_back(token);
    if (o.on_token) o.on_token(token);
    if (o.eod >= 0 && token == o.eod) {
      r.stopped_on_eod = true;
      break;
    }
  }
  model.train(was_training);
  return r;
}

}  // namespace mcore::inference
