// GPTModel under context parallelism, MPI on 2 and 4 ranks: for CP in {2, 4} (those dividing
// the world) x TP in {1, 2} x sequence parallelism x dropout on/off x a block-causal attention
// mask (Megatron's --reset-attention-mask) or none, each rank feeds its two sequence chunks
// (chunks r and 2cp-1-r) and must get the per-token losses of those positions, and, summed
// over the context-parallel group (and gathered over TP), the gradients of the same model run
// whole on one rank. Dropout is on in both the hidden states and the attention probabilities:
// its masks are keyed by the global element index, so every layout draws the same ones. The
// objective is the token-loss sum, so each rank's gradient is a partial sum. fp32 tolerance 1e-5
// relative: only the summation order differs.
#include <gtest/gtest.h>

#include <map>
#include <string>

#include "mcore/base/rng_state.h"
#include "mcore/comm/distributed.h"
#include "mcore/comm/local_backend.h"
#include "mcore/models/gpt/gpt_model.h"
#include "mcore/nn/functional.h"
#include "mcore/parallel_state/parallel_state.h"
#include "mcore/tensor/factory.h"
#include "mcore/tensor_parallel/init.h"
#include "mcore/tensor_parallel/mappings.h"
#include "mcore/transformer/context_parallel.h"
#include "tests/common/test_util.h"
#include "tests/distributed/gpt_layout_util.h"

namespace mcore::testing {
namespace {

namespace ps = parallel_state;
using transformer::TransformerConfig;

constexpr double kTol = 1e-5;
constexpr int64_t kVocab = 128, kBatch = 2, kSeq = 16;

struct Inputs {
  Tensor ids, labels, positions, mask;  // mask: [b, 1, s, s], true = masked out
};

// Two documents per sample, split at a different place in each: a block-causal mask with
// positions restarting at each document, as the GPT dataset makes them.
Inputs make_inputs(bool with_mask) {
  Inputs in;
  in.ids = empty({kBatch, kSeq}, DType::I64);
  in.labels = empty({kBatch, kSeq}, DType::I64);
  in.positions = empty({kBatch, kSeq}, DType::I64);
  for (int64_t i = 0; i < kBatch * kSeq; ++i) {
    in.ids.data<int64_t>()[i] = (i * 37 + 11) % kVocab;
    in.labels.data<int64_t>()[i] = (i * 53 + 5) % kVocab;
  }
  if (!with_mask) {
    for (int64_t b = 0; b < kBatch; ++b)
      for (int64_t s = 0; s < kSeq; ++s) in.positions.data<int64_t>()[b * kSeq + s] = s;
    return in;
  }
  in.mask = empty({kBatch, 1, kSeq, kSeq}, DType::BOOL);
  for (int64_t b = 0; b < kBatch; ++b) {
    const int64_t cut = 5 + 4 * b;  // the second document starts here
    for (int64_t i = 0; i < kSeq; ++i) {
      in.positions.data<int64_t>()[b * kSeq + i] = i < cut ? i : i - cut;
      for (int64_t j = 0; j < kSeq; ++j) {
        const bool same_doc = (i < cut) == (j < cut);
        in.mask.data<bool>()[(b * kSeq + i) * kSeq + j] = !(same_doc && j <= i);
      }
    }
  }
  return in;
}

struct Result {
  Tensor loss;                          // [b, s] (CP: this rank's chunks)
  std::map<std::string, Tensor> grads;  // full gradients
};

Result run(TransformerConfig c, bool tied, int tp, int cp, bool sp, bool dropout,
           const Inputs& global, comm::ProcessGroupPtr tp_group) {
  c.tensor_model_parallel_size = tp;
  c.context_parallel_size = cp;
  c.sequence_parallel = sp;
  c.hidden_dropout = dropout ? 0.1 : 0.0;
  c.attention_dropout = dropout ? 0.1 : 0.0;
  models::GPTModelOptions o;
  o.share_embeddings_and_output_weights = tied;
  o.tp_group = tp_group;
  models::GPTModel model(c, transformer::get_gpt_layer_local_spec(c.qk_layernorm), kVocab, 32, o);
  const transformer::ContextParallelLayout layout = transformer::context_parallel_layout(cp);
  auto cut = [&](const Tensor& t, int64_t dim) {
    return t.defined() ? transformer::slice_for_context_parallel_rank(t, dim, layout) : t;
  };
  set_rng_state({4242, 3});
  Result r;
  r.loss = model.forward(cut(global.ids, 1), cut(global.positions, 1), cut(global.mask, 2),
                         cut(global.labels, 1));
  F::sum(r.loss).backward();
  r.grads = whole_gradients(model, tp, tp_group);
  // Each context-parallel rank's gradients are partial sums over its tokens.
  if (cp > 1)
    for (auto& [name, g] : r.grads) g = tensor_parallel::all_reduce_copy(g, layout.group);
  return r;
}

void check_layouts(const TransformerConfig& config, bool tied) {
  const int world = comm::get_world_size();
  for (bool with_mask : {false, true}) {
    const Inputs in = make_inputs(with_mask);
    for (bool dropout : {false, true}) {
      Result ref = run(config, tied, 1, 1, false, dropout, in, comm::make_local_group());
      for (int cp : {2, 4}) {
        for (int tp : {1, 2}) {
          if (world % (cp * tp) != 0) continue;
          ps::initialize_model_parallel(tp, 1, std::nullopt, cp);
          for (bool sp : {false, true}) {
            if (sp && tp == 1) continue;
            SCOPED_TRACE("cp " + std::to_string(cp) + " tp " + std::to_string(tp) +
                         (sp ? " sp" : "") + (dropout ? " dropout" : "") +
                         (with_mask ? " mask" : ""));
            Result r =
                run(config, tied, tp, cp, sp, dropout, in, ps::get_tensor_model_parallel_group());
            const transformer::ContextParallelLayout layout =
                transformer::context_parallel_layout(cp);
            EXPECT_LT(max_rel_error(r.loss, transformer::slice_for_context_parallel_rank(
                                                ref.loss.detach(), 1, layout)),
                      kTol);
            expect_same_gradients(r.grads, ref.grads, kTol);
          }
          ps::destroy_model_parallel();
        }
      }
    }
  }
}

TEST(GPTModelContextParallel, LlamaStyleLayoutInvariant) {
  check_layouts(llama_config(), false);
}
TEST(GPTModelContextParallel, Gpt2StyleLayoutInvariant) {
  check_layouts(gpt2_config(), true);
}

// The layout itself: rank r holds chunks r and 2cp-1-r, in that order.
TEST(GPTModelContextParallel, ChunkLayout) {
  const int world = comm::get_world_size();
  ps::initialize_model_parallel(1, 1, std::nullopt, world);
  const transformer::ContextParallelLayout l = transformer::context_parallel_layout(world);
  ASSERT_EQ(l.size, world);
  Tensor t = arange(0, 4 * world, 1, {DType::I64}).view({1, 4 * world});
  std::vector<int64_t> got =
      to_vector<int64_t>(transformer::slice_for_context_parallel_rank(t, 1, l));
  const int64_t r = l.rank;
  EXPECT_EQ(got, (std::vector<int64_t>{2 * r, 2 * r + 1, 2 * (2 * world - 1 - r),
                                       2 * (2 * world - 1 - r) + 1}));
  ps::destroy_model_parallel();
}

}  // namespace
}  // namespace mcore::testing
