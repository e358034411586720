// Interleaved 1F1B (Megatron Core's forward_backward_pipelining_with_interleaving, the
// path without p2p/compute overlap). All ranks step through the same sequence of "virtual
// microbatches" (a microbatch of one model chunk) in lockstep: every exchange pairs a send on
// one rank with a receive on its neighbour at the same step, which is what makes the schedule
// deadlock-free and lets order-matching backends (NCCL) pair messages.
#include <deque>

#include "mcore/parallel_state/parallel_state.h"
#include "mcore/pipeline_parallel/schedule_runner.h"
#include "mcore/pipeline_parallel/schedules.h"

namespace mcore::pipeline_parallel {

namespace {

struct Interleaving {
  int pp = 1, rank = 0, chunks = 1;
  int64_t num_microbatches = 0, total = 0;
  std::vector<std::pair<int64_t, int>> table;

  int chunk_id(int64_t virtual_id, bool forward) const {
    const int c = table[static_cast<size_t>(virtual_id % total)].second;
    return forward ? c : chunks - 1 - c;
  }
  int64_t microbatch_id(int64_t virtual_id) const {
    return table[static_cast<size_t>(virtual_id)].first;
  }
  bool is_last_microbatch_for_chunk(int64_t virtual_id) const {
    return virtual_id < total && microbatch_id(virtual_id) == num_microbatches - 1;
  }
  bool is_first_stage(int chunk) const { return rank == 0 && chunk == 0; }
  bool is_last_stage(int chunk) const { return rank == pp - 1 && chunk == chunks - 1; }

  // Whether this rank receives at step `virtual_id` and for which chunk. The "leading" rank (the
  // first in forward, the last in backward) receives from the other end of the pipeline, which
  // runs pp - 1 virtual microbatches behind it; the others receive for their next step.
  std::pair<bool, int> recv_from_previous_stage(int64_t virtual_id, bool forward) const {
    const bool leading = forward ? rank == 0 : rank == pp - 1;
    if (!leading) return {true, chunk_id(virtual_id + 1, forward)};
    bool recv = true;
    int next;
    if (virtual_id < pp - 1) {
      recv = false;  // the other end has produced nothing yet
      next = chunk_id(virtual_id + 1, forward);
    } else {
      next = chunk_id(virtual_id - (pp - 1), forward);
    }
    // The model's last chunk (first, in backward) sends nothing around the ring.
    if (next == (forward ? chunks - 1 : 0)) recv = false;
    next += forward ? 1 : -1;
    return {recv, next};
  }
};

}  // namespace

ForwardBackwardResult forward_backward_pipelining_with_interleaving(
    const ForwardStepFunc& forward_step_func, const ScheduleConfig& config) {
  P2PCommunicator p2p(config.pp_group, config.p2p);
  detail::ScheduleRunner run(forward_step_func, config);
  Interleaving s;
  s.pp = p2p.size();
  s.rank = p2p.rank();
  s.chunks = config.num_model_chunks;
  s.num_microbatches = config.num_microbatches;
  s.total = s.num_microbatches * s.chunks;
  MCORE_CHECK(s.chunks > 1) << "the interleaved schedule needs more than one model chunk";
  MCORE_CHECK(s.pp > 1) << "the interleaved schedule needs more than one pipeline stage";
  const int group = config.microbatch_group_size_per_vp_stage > 0
                        ? config.microbatch_group_size_per_vp_stage
                        : s.pp;
  MCORE_CHECK(group >= s.pp && group <= s.num_microbatches)
      << "interleaved pipeline schedule: the microbatch group size per virtual stage (" << group
      << ") must lie in [pipeline size " << s.pp << ", number of microbatches "
      << s.num_microbatches
      << "]: use at least as many microbatches per step as pipeline stages (global batch size / "
         "(micro batch size x data-parallel size))";
  const int64_t tail = s.num_microbatches % group;
  MCORE_CHECK(tail == 0 || tail >= s.pp)
      << "interleaved pipeline schedule: " << s.num_microbatches
      << " microbatches leave a last group of " << tail << " (group size " << group
      << "), fewer than the " << s.pp
      << " pipeline stages: make the number of microbatches a multiple of the group size";
  s.table = get_schedule_table(s.num_microbatches, s.chunks, group);

  const bool fwd_only = config.forward_only, train = !fwd_only;
  int64_t warmup = fwd_only ? s.total : (s.pp - s.rank - 1) * 2 + (s.chunks - 1) * int64_t{group};
  bool all_warmup = false;
  if (warmup >= s.total) {
    warmup = s.total;
    all_warmup = true;
  }
  const int64_t remaining = s.total - warmup;

  run.disable_grad_sync();
  std::vector<std::deque<Tensor>> inputs(s.chunks), outputs(s.chunks), output_grads(s.chunks);
  std::vector<int64_t> released(s.chunks, 0);  // inputs popped so far, per chunk

  auto forward_helper = [&](int64_t k) {
    const int chunk = s.chunk_id(k, true);
    const int64_t mb = s.microbatch_id(k);
    parallel_state::set_virtual_pipeline_model_parallel_rank(chunk);
    auto& in = inputs[chunk];
    if (s.is_first_stage(chunk) && in.size() == outputs[chunk].size()) in.push_back(Tensor());
    const int64_t index = mb - released[chunk];
    MCORE_CHECK(index >= 0 && index < static_cast<int64_t>(in.size()))
        << "interleaved schedule: no input for microbatch " << mb << " of chunk " << chunk;
    Tensor output =
        run.forward_step(mb, chunk, in[static_cast<size_t>(index)], s.is_last_stage(chunk));
    outputs[chunk].push_back(output);
    if (fwd_only) {
      in.pop_front();
      ++released[chunk];
      outputs[chunk].pop_back();
    }
    return output;
  };
  auto backward_helper = [&](int64_t k) {
    const int chunk = s.chunk_id(k, false);
    parallel_state::set_virtual_pipeline_model_parallel_rank(chunk);
    if (s.is_last_microbatch_for_chunk(k)) run.enable_grad_sync();
    if (s.is_last_stage(chunk) && output_grads[chunk].empty()) output_grads[chunk].push_back({});
    Tensor in = inputs[chunk].front(), out = outputs[chunk].front();
    Tensor grad = output_grads[chunk].front();
    inputs[chunk].pop_front();
    ++released[chunk];
    outputs[chunk].pop_front();
    output_grads[chunk].pop_front();
    Tensor input_grad = run.backward_step(in, out, grad);
    run.disable_grad_sync();
    return input_grad;
  };
  // After a send, only the graph of the stored output is kept.
  auto release_last = [&](int chunk) {
    if (train && !outputs[chunk].empty())
      outputs[chunk].back() = run.release_output(outputs[chunk].back());
  };

  // Warmup: forwards only.
  inputs[0].push_back(p2p.recv_forward(s.is_first_stage(0), train));
  for (int64_t k = 0; k < warmup; ++k) {
    Tensor output = forward_helper(k);
    const int cur = s.chunk_id(k, true);
    auto [recv_prev, next_chunk] = s.recv_from_previous_stage(k, true);
    if (k == s.total - 1) recv_prev = false;
    if (s.is_last_stage(cur)) output = Tensor();
    Tensor input;
    if (k == warmup - 1 && train && !all_warmup) {
      const bool recv_next = !p2p.is_last_stage();
      Tensor grad;
      std::tie(input, grad) =
          p2p.send_forward_backward_recv_forward_backward(output, Tensor(), recv_prev, recv_next);
      output_grads[s.chunks - 1].push_back(grad);
    } else {
      input = p2p.send_forward_recv_forward(output, recv_prev, train);
    }
    if (recv_prev) inputs[next_chunk].push_back(input);
    release_last(cur);
  }

  // Steady state: one forward and one backward per step.
  for (int64_t k = 0; k < remaining; ++k) {
    const int64_t fk = k + warmup, bk = k;
    Tensor output = forward_helper(fk);
    const int fchunk = s.chunk_id(fk, true);
    Tensor input_grad = backward_helper(bk);
    if (s.is_last_stage(fchunk)) output = Tensor();
    if (s.is_first_stage(s.chunk_id(bk, false))) input_grad = Tensor();
    auto [recv_prev, next_fchunk] = s.recv_from_previous_stage(fk, true);
    auto [recv_next, next_bchunk] = s.recv_from_previous_stage(bk, false);
    if (k == remaining - 1) recv_prev = false;
    auto [input, grad] =
        p2p.send_forward_backward_recv_forward_backward(output, input_grad, recv_prev, recv_next);
    release_last(fchunk);
    if (recv_prev) inputs[next_fchunk].push_back(input);
    if (recv_next) output_grads[next_bchunk].push_back(grad);
  }

  // Cooldown: the remaining backwards.
  if (train) {
    if (all_warmup)
      output_grads[s.chunks - 1].push_back(p2p.recv_backward(s.is_last_stage(s.chunks - 1)));
    for (int64_t k = remaining; k < s.total; ++k) {
      Tensor input_grad = backward_helper(k);
      if (s.is_first_stage(s.chunk_id(k, false))) input_grad = Tensor();
      auto [recv_next, next_chunk] = s.recv_from_previous_stage(k, false);
      if (k == s.total - 1) recv_next = false;
      Tensor grad = p2p.send_backward_recv_backward(input_grad, recv_next);
      if (recv_next) output_grads[next_chunk].push_back(grad);
    }
  }
  parallel_state::set_virtual_pipeline_model_parallel_rank(std::nullopt);
  return run.finish();
}

}  // namespace mcore::pipeline_parallel
