#include "mcore/training/microbatch_step.h"

#include <algorithm>
#include <cmath>

#include "mcore/base/error.h"
#include "mcore/base/rng_state.h"
#include "mcore/comm/distributed.h"
#include "mcore/nn/functional.h"
#include "mcore/parallel_state/parallel_state.h"
#include "mcore/tensor/factory.h"
#include "mcore/training/training_device.h"
#include "mcore/transformer/context_parallel.h"

namespace mcore::training {

double all_reduce_scalar(const comm::ProcessGroupPtr& group, double v, comm::ReduceOp op) {
  if (!group || group->size() == 1) return v;
  Tensor t = from_vector<double>({v}).to(comm::group_device(*group));
  group->all_reduce(t, op);
  return t.item();
}

namespace {

// This context-parallel rank's chunks of every per-token field (Megatron's
// get_batch_on_this_cp_rank); the attention mask keeps its query rows and every key.
datasets::GPTBatch slice_for_context_parallel_rank(const datasets::GPTBatch& b,
                                                   const transformer::ContextParallelLayout& cp) {
  if (cp.size == 1) return b;
  datasets::GPTBatch out = b;
  auto cut = [&](const Tensor& t, int64_t dim) {
    return t.defined() ? transformer::slice_for_context_parallel_rank(t, dim, cp) : t;
  };
  out.tokens = cut(b.tokens, 1);
  out.labels = cut(b.labels, 1);
  out.loss_mask = cut(b.loss_mask, 1);
  out.position_ids = cut(b.position_ids, 1);
  out.attention_mask = cut(b.attention_mask, 2);
  return out;
}

double sum_of(const Tensor& mask) {
  const Tensor m = mask.contiguous();
  const float* p = m.data<float>();
  double s = 0;
  for (int64_t i = 0; i < m.numel(); ++i) s += p[i];
  return s;
}

}  // namespace

StepLoss run_microbatches(GPTModelChunks& model, const std::vector<datasets::GPTBatch>& batches,
                          const Arguments& a, optimizer::MegatronOptimizer* opt, bool forward_only,
                          int64_t iteration) {
  const uint64_t base_step = get_rng_state().step;
  const int64_t num_mb = static_cast<int64_t>(batches.size());
  const int64_t dp_size = parallel_state::get_data_parallel_world_size();
  const int64_t dp_rank = parallel_state::get_data_parallel_rank();
  const transformer::ContextParallelLayout cp =
      transformer::context_parallel_layout(a.context_parallel_size);
  auto forward_step = [&](int64_t mb, int chunk, const Tensor& input,
                          bool last) -> pipeline_parallel::ForwardStepOutput {
    RngState r = get_rng_state();
    r.step = base_step + static_cast<uint64_t>(mb * dp_size + dp_rank) + 1;
    set_rng_state(r);
    models::GPTModel& m = *model.chunks[static_cast<size_t>(chunk)];
    if (input.defined()) m.set_input_tensor(input);
    // The loss-mask sums are taken on the host before the batch moves to the model's device:
    // the microbatch's (whose mean token loss is the objective) and this rank's share of it.
    const datasets::GPTBatch& whole = batches[static_cast<size_t>(mb)];
    const datasets::GPTBatch host = slice_for_context_parallel_rank(whole, cp);
    double mask_sum = 0, local_mask_sum = 0;
    if (last) {
      mask_sum = sum_of(whole.loss_mask);
      local_mask_sum = cp.size > 1 ? sum_of(host.loss_mask) : mask_sum;
    }
    const datasets::GPTBatch b = batch_to_device(host, model.device);
    Tensor out =
        m.forward(b.tokens, b.position_ids, a.reset_attention_mask ? b.attention_mask : Tensor(),
                  last ? b.labels : Tensor());
    if (!last) return {out, {}, 0.0};
    Tensor loss = F::sum(F::mul(out, b.loss_mask));
    const double value = loss.item();  // reported: this rank's token-loss sum
    // Each context-parallel rank holds part of the microbatch's loss; DDP averages gradients
    // over data x context ranks, so the part is scaled by the context size (as Megatron's
    // loss_func does) for the average to be the data-parallel mean.
    if (!a.calculate_per_token_loss)
      loss = F::scale(loss, static_cast<double>(cp.size) / std::max(mask_sum, 1.0));
    if (!forward_only && a.check_for_nan_in_loss_and_grad && !a.fp16 && !std::isfinite(value)) {
      MCORE_CHECK(false) << "Rank " << comm::get_rank() << ": found "
                         << (std::isnan(value) ? "NaN" : "Inf")
                         << " in local forward loss calculation at iteration " << iteration + 1;
    }
    return {loss, {{"lm loss", value}}, local_mask_sum};
  };
  pipeline_parallel::ScheduleConfig sc;
  sc.num_microbatches = num_mb;
  sc.num_model_chunks = static_cast<int>(model.chunks.size());
  sc.forward_only = forward_only;
  sc.calculate_per_token_loss = a.calculate_per_token_loss;
  const transformer::TransformerConfig& cfg = model.chunks[0]->config();
  int64_t seq = *a.seq_length / cp.size;
  if (cfg.sequence_parallel) seq /= cfg.tensor_model_parallel_size;
  sc.p2p.tensor_shape = {seq, *a.micro_batch_size, cfg.hidden_size};
  sc.p2p.pipeline_dtype = cfg.params_dtype;
  sc.p2p.variable_seq_lengths = a.variable_seq_lengths;
  sc.p2p.device = model.device;
  sc.microbatch_group_size_per_vp_stage =
      static_cast<int>(a.microbatch_group_size_per_vp_stage.value_or(0));
  if (!forward_only) {
    sc.ddp = model.ddp_ptrs();
    sc.grad_scale_func = [opt](const Tensor& loss) { return opt->scale_loss(loss); };
  }
  auto fb = pipeline_parallel::get_forward_backward_func(sc.num_model_chunks);
  pipeline_parallel::ForwardBackwardResult res = fb(forward_step, sc);
  RngState r = get_rng_state();
  r.step = base_step + static_cast<uint64_t>(num_mb * dp_size);
  set_rng_state(r);

  double sum = 0;
  for (const auto& reported : res.losses_reduced)
    for (const auto& [name, v] : reported)
      if (name == "lm loss") sum += v;
  double count = res.num_tokens;
  // Only the last pipeline stage computed the loss: share it along the pipeline.
  if (parallel_state::get_pipeline_model_parallel_world_size() > 1) {
    const bool last = parallel_state::is_pipeline_last_stage();
    const auto& pp = parallel_state::get_pipeline_model_parallel_group();
    sum = all_reduce_scalar(pp, last ? sum : 0.0, comm::ReduceOp::kSum);
    count = all_reduce_scalar(pp, last ? count : 0.0, comm::ReduceOp::kSum);
  }
  return {sum, count, res.num_tokens, res.stats};
}

double data_parallel_loss(const comm::ProcessGroupPtr& dp_group, double sum, double count) {
  return all_reduce_scalar(dp_group, sum, comm::ReduceOp::kSum) /
         std::max(all_reduce_scalar(dp_group, count, comm::ReduceOp::kSum), 1.0);
}

}  // namespace mcore::training
