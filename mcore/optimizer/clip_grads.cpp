#include "mcore/optimizer/clip_grads.h"

#include <cmath>
#include <limits>

#include "mcore/base/error.h"
#include "mcore/comm/distributed.h"
#include "mcore/ops/multi_tensor.h"
#include "mcore/ops/reduction.h"
#include "mcore/parallel_state/parallel_state.h"
#include "mcore/tensor/factory.h"

namespace mcore::optimizer {

namespace {

// Sum of |g|^p in float64, for norms other than 2 and inf (rare: kept simple and serial).
double sum_abs_pow(const std::vector<Tensor>& grads, double p) {
  double total = 0.0;
  for (const Tensor& g : grads) {
    const Tensor g64 = g.to(Device::cpu()).to(DType::F64).contiguous();
    const double* x = g64.data<double>();
    for (int64_t i = 0; i < g64.numel(); ++i) total += std::pow(std::fabs(x[i]), p);
  }
  return total;
}

double all_reduce_scalar(double value, comm::ReduceOp op, const comm::ProcessGroupPtr& group) {
  if (!group || group->size() == 1) return value;
  Tensor t = from_vector<double>({value}).to(comm::group_device(*group));
  group->all_reduce(t, op);
  return t.item();
}

}  // namespace

bool param_is_not_shared(const nn::Parameter& param) {
  return !param.shared;
}

bool param_is_not_tensor_parallel_duplicate(const nn::Parameter& param, int tp_rank) {
  return param.tensor_model_parallel || tp_rank == 0;
}

int default_tensor_model_parallel_rank() {
  return parallel_state::model_parallel_is_initialized()
             ? parallel_state::get_tensor_model_parallel_rank()
             : 0;
}

comm::ProcessGroupPtr default_grad_stats_parallel_group() {
  return parallel_state::model_parallel_is_initialized()
             ? parallel_state::get_model_parallel_group()
             : nullptr;
}

double get_grad_norm_fp32(const std::vector<Tensor>& grads_for_norm, double norm_type,
                          const comm::ProcessGroupPtr& group) {
  MCORE_CHECK(norm_type > 0.0) << "get_grad_norm_fp32: norm type " << norm_type
                               << " must be positive (2 for L2, inf for the max norm)";
  if (std::isinf(norm_type)) {
    const double local = ops::multi_tensor_max_abs(grads_for_norm);
    // MPI's max drops NaN depending on the order: reduce a NaN flag beside the value.
    const double nan_anywhere =
        all_reduce_scalar(std::isnan(local) ? 1.0 : 0.0, comm::ReduceOp::kMax, group);
    const double total =
        all_reduce_scalar(std::isnan(local) ? 0.0 : local, comm::ReduceOp::kMax, group);
    return nan_anywhere > 0.0 ? std::numeric_limits<double>::quiet_NaN() : total;
  }
  const double local = norm_type == 2.0 ? ops::multi_tensor_l2norm_squared(grads_for_norm)
                                        : sum_abs_pow(grads_for_norm, norm_type);
  const double total = all_reduce_scalar(local, comm::ReduceOp::kSum, group);
  return norm_type == 2.0 ? std::sqrt(total) : std::pow(total, 1.0 / norm_type);
}

void clip_grad_by_total_norm_fp32(std::vector<Tensor>& grads, double max_norm, double total_norm) {
  const double clip_coeff = max_norm / (total_norm + 1.0e-6);
  if (clip_coeff < 1.0) ops::multi_tensor_scale_(grads, clip_coeff);
}

int64_t count_zeros_fp32(const std::vector<Tensor>& grads, const comm::ProcessGroupPtr& group) {
  const double local = static_cast<double>(ops::multi_tensor_count_zeros(grads));
  // Counts up to 2^53 are exact in float64.
  return static_cast<int64_t>(all_reduce_scalar(local, comm::ReduceOp::kSum, group));
}

void check_for_nan_or_inf(double value, const std::string& what, int64_t iteration) {
  MCORE_CHECK(std::isfinite(value))
      << "[rank " << comm::get_rank() << "] iteration " << iteration << ": found "
      << (std::isnan(value) ? "NaN" : "Inf") << " in " << what << " (" << value
      << "); lower the learning rate, enable gradient clipping (--clip-grad), or use "
      << "--fp16 with a dynamic loss scale / --bf16";
}

}  // namespace mcore::optimizer
