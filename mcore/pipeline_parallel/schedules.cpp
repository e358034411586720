#include "mcore/pipeline_parallel/schedules.h"

#include <deque>

#include "mcore/parallel_state/parallel_state.h"
#include "mcore/pipeline_parallel/schedule_runner.h"

namespace mcore::pipeline_parallel {

using detail::ScheduleRunner;

ForwardBackwardResult forward_backward_no_pipelining(const ForwardStepFunc& forward_step_func,
                                                     const ScheduleConfig& config) {
  MCORE_CHECK(config.num_model_chunks == 1)
      << "the schedule without pipelining runs one model chunk, got " << config.num_model_chunks
      << " (virtual pipeline stages need --pipeline-model-parallel-size > 1)";
  ScheduleRunner run(forward_step_func, config);
  const int64_t m = config.num_microbatches;
  for (int64_t i = 0; i < m; ++i) {
    // The data-parallel reduction starts only with the last microbatch's backward.
    if (i + 1 < m) {
      run.disable_grad_sync();
    } else {
      run.enable_grad_sync();
    }
    Tensor loss = run.forward_step(i, 0, Tensor(), /*is_last_stage=*/true);
    if (!config.forward_only) run.backward_step(Tensor(), loss, Tensor());
  }
  return run.finish();
}

ForwardBackwardResult forward_backward_pipelining_without_interleaving(
    const ForwardStepFunc& forward_step_func, const ScheduleConfig& config) {
  MCORE_CHECK(config.num_model_chunks == 1)
      << "1F1B without interleaving runs one model chunk per rank, got " << config.num_model_chunks;
  P2PCommunicator p2p(config.pp_group, config.p2p);
  ScheduleRunner run(forward_step_func, config);
  const bool first = p2p.is_first_stage(), last = p2p.is_last_stage();
  const bool fwd_only = config.forward_only;
  const int64_t m = config.num_microbatches;
  const int64_t warmup = std::min<int64_t>(p2p.size() - p2p.rank() - 1, m);
  const int64_t remaining = m - warmup;
  const bool train = !fwd_only;

  run.disable_grad_sync();
  std::deque<Tensor> inputs, outputs;

  for (int64_t i = 0; i < warmup; ++i) {
    Tensor input = p2p.recv_forward(first, train);
    Tensor output = run.forward_step(i, 0, input, last);
    p2p.send_forward(output, last);
    if (train) {
      inputs.push_back(input);
      outputs.push_back(run.release_output(output));
    }
  }

  Tensor input;
  if (remaining > 0) input = p2p.recv_forward(first, train);
  for (int64_t i = 0; i < remaining; ++i) {
    const bool last_iteration = i == remaining - 1;
    Tensor output = run.forward_step(warmup + i, 0, input, last);
    if (fwd_only) {
      p2p.send_forward(output, last);
      if (!last_iteration) input = p2p.recv_forward(first, false);
      continue;
    }
    Tensor output_grad = p2p.send_forward_recv_backward(output, last);
    inputs.push_back(input);
    outputs.push_back(run.release_output(output));
    input = inputs.front();
    inputs.pop_front();
    output = outputs.front();
    outputs.pop_front();
    // Without warmup (the last stage) this is the step's final backward: let DDP reduce.
    if (warmup == 0 && last_iteration) run.enable_grad_sync();
    Tensor input_grad = run.backward_step(input, output, output_grad);
    if (last_iteration) {
      input = Tensor();
      p2p.send_backward(input_grad, first);
    } else {
      input = p2p.send_backward_recv_forward(input_grad, first, true);
    }
  }

  if (train) {
    for (int64_t i = 0; i < warmup; ++i) {
      if (i == warmup - 1) run.enable_grad_sync();
      Tensor in = inputs.front(), out = outputs.front();
      inputs.pop_front();
      outputs.pop_front();
      Tensor output_grad = p2p.recv_backward(last);
      Tensor input_grad = run.backward_step(in, out, output_grad);
      p2p.send_backward(input_grad, first);
    }
  }
  return run.finish();
}

ForwardBackwardFunc get_forward_backward_func(int num_model_chunks,
                                              const comm::ProcessGroupPtr& pp_group) {
  int pp_size = 1;
  if (pp_group) {
    pp_size = pp_group->size();
  } else if (parallel_state::model_parallel_is_initialized()) {
    pp_size = parallel_state::get_pipeline_model_parallel_world_size();
  }
  if (pp_size > 1) {
    if (num_model_chunks > 1) return forward_backward_pipelining_with_interleaving;
    return forward_backward_pipelining_without_interleaving;
  }
  MCORE_CHECK(num_model_chunks == 1) << "virtual pipeline stages (" << num_model_chunks
                                     << " model chunks) need --pipeline-model-parallel-size > 1";
  return forward_backward_no_pipelining;
}

std::vector<std::pair<int64_t, int>> get_schedule_table(int64_t num_microbatches,
                                                        int num_model_chunks, int group_size) {
  MCORE_CHECK(group_size > 0) << "microbatch group size must be positive";
  std::vector<std::pair<int64_t, int>> table;
  for (int64_t lo = 0; lo < num_microbatches; lo += group_size) {
    // The last group takes whatever is left.
    const int64_t hi = lo + group_size >= num_microbatches ? num_microbatches : lo + group_size;
    for (int c = 0; c < num_model_chunks; ++c)
      for (int64_t mb = lo; mb < hi; ++mb) table.emplace_back(mb, c);
    if (hi == num_microbatches) break;
  }
  return table;
}

}  // namespace mcore::pipeline_parallel
