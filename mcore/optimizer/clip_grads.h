// Global gradient norm and clipping across model-parallel ranks (Megatron's clip_grads.py).
//
// Every model-parallel rank holds part of the model: tensor-parallel shards of split weights,
// replicas of the rest (norms, biases of row-parallel layers), and on the last pipeline stage
// possibly a copy of the tied embedding. The norm of the whole model counts each element once:
// a parameter enters the local sum if it is not `shared` (the tied copy: its twin on the first
// stage is counted) and either tensor-parallel sharded or on tensor-parallel rank 0; the local
// sums of squares (or maxima) are then all-reduced over the model-parallel group. Gradients are
// scaled by max_norm / (norm + 1e-6) when that is below 1.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "mcore/comm/process_group.h"
#include "mcore/nn/parameter.h"
#include "mcore/tensor/tensor.h"

namespace mcore::optimizer {

// Megatron's filters for the norm and the zero count.
bool param_is_not_shared(const nn::Parameter& param);
bool param_is_not_tensor_parallel_duplicate(const nn::Parameter& param, int tp_rank);

// parallel_state's tensor-parallel rank, or 0 when model parallelism is not initialized.
int default_tensor_model_parallel_rank();
// parallel_state's model-parallel group, or nullptr (one process, no reduction) when not
// initialized.
comm::ProcessGroupPtr default_grad_stats_parallel_group();

// ||grads||_p over all ranks of `grad_stats_parallel_group` (nullptr: this process only).
// norm_type 2: sqrt of the float64 sum of squares; +inf: the largest magnitude (all-reduced
// with max); other p: (sum |g|^p)^(1/p). Grads are float32/float64, contiguous. Inf/NaN
// propagate to the result. Collective over the group: every member must call it.
double get_grad_norm_fp32(const std::vector<Tensor>& grads_for_norm, double norm_type = 2.0,
                          const comm::ProcessGroupPtr& grad_stats_parallel_group = nullptr);

// grads *= max_norm / (total_norm + 1e-6) when that factor is below 1 (in place).
void clip_grad_by_total_norm_fp32(std::vector<Tensor>& grads, double max_norm, double total_norm);

// Number of zero elements in `grads` summed over the group (Megatron's count_zeros_fp32; pass
// the grads that passed the filters above).
int64_t count_zeros_fp32(const std::vector<Tensor>& grads,
                         const comm::ProcessGroupPtr& grad_stats_parallel_group = nullptr);

// Megatron's --check-for-nan-in-loss-and-grad: errors when `value` is NaN or Inf, naming
// `what` ("grad norm", "lm loss"), the iteration and this process's rank.
void check_for_nan_or_inf(double value, const std::string& what, int64_t iteration);

}  // namespace mcore::optimizer
