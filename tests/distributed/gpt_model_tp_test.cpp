// GPTModel layout invariance under MPI (2 and 4 ranks): for TP in {1, 2, 4} (those dividing
// the world; the other ranks are data-parallel replicas) x sequence parallelism on/off x dropout
// on/off, a tensor-parallel model built from the same seed must give the per-token loss and -
// after gathering sharded gradients and summing the partial ones (sequence-parallel norms and
// biases, QK-norms) over the TP group - the gradients of the same model built unsharded on one
// rank (computed locally on every rank). Init and dropout are keyed by global names and
// indices, so nothing is copied between the two models. fp32 tolerance 1e-5 relative: only
// the summation order differs (partial GEMMs summed across ranks).
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
#include "tests/common/test_util.h"
#include "tests/distributed/gpt_layout_util.h"

namespace mcore::testing {
namespace {

namespace ps = parallel_state;
using transformer::TransformerConfig;

constexpr double kTol = 1e-5;
constexpr int64_t kVocab = 128, kBatch = 2, kSeq = 8;

struct Result {
  Tensor loss;
  std::map<std::string, Tensor> grads;  // full (gathered / reduced) gradients
};

Result run(TransformerConfig c, bool tied, int tp, bool sp, bool dropout,
           comm::ProcessGroupPtr group) {
  c.tensor_model_parallel_size = tp;
  c.sequence_parallel = sp;
  c.hidden_dropout = dropout ? 0.1 : 0.0;
  c.attention_dropout = dropout ? 0.1 : 0.0;
  models::GPTModelOptions o;
  o.share_embeddings_and_output_weights = tied;
  o.tp_group = group;
  models::GPTModel model(c, transformer::get_gpt_layer_local_spec(/*qk_layernorm=*/c.qk_layernorm),
                         kVocab, 32, o);
  Tensor ids = empty({kBatch, kSeq}, DType::I64), labels = empty({kBatch, kSeq}, DType::I64);
  for (int64_t i = 0; i < kBatch * kSeq; ++i) {
    ids.data<int64_t>()[i] = (i * 37 + 11) % kVocab;
    labels.data<int64_t>()[i] = (i * 53 + 5) % kVocab;
  }
  set_rng_state({4242, 3});
  Result r;
  r.loss = model.forward(ids, Tensor(), Tensor(), labels);
  F::mean(r.loss).backward();
  r.grads = whole_gradients(model, tp, group);
  return r;
}

void check_layouts(const TransformerConfig& config, bool tied) {
  const int world = comm::get_world_size();
  for (bool dropout : {false, true}) {
    Result ref = run(config, tied, 1, false, dropout, comm::make_local_group());
    for (int tp : {1, 2, 4}) {
      if (world % tp != 0) continue;
      ps::initialize_model_parallel(tp, 1);
      for (bool sp : {false, true}) {
        if (sp && tp == 1) continue;
        SCOPED_TRACE("tp " + std::to_string(tp) + (sp ? " sp" : "") + (dropout ? " dropout" : ""));
        Result r = run(config, tied, tp, sp, dropout, ps::get_tensor_model_parallel_group());
        EXPECT_LT(max_rel_error(r.loss, ref.loss), kTol);
        expect_same_gradients(r.grads, ref.grads, kTol);
      }
      ps::destroy_model_parallel();
    }
  }
}

TEST(GPTModelTensorParallel, LlamaStyleLayoutInvariant) {
  check_layouts(llama_config(), false);
}
TEST(GPTModelTensorParallel, Gpt2StyleLayoutInvariant) {
  check_layouts(gpt2_config(), true);
}

}  // namespace
}  // namespace mcore::testing
