#include "mcore/tensor_parallel/utils.h"

#include "mcore/parallel_state/parallel_state.h"

namespace mcore::tensor_parallel {

int64_t divide(int64_t numerator, int64_t denominator, const std::string& what) {
  MCORE_CHECK(denominator > 0) << (what.empty() ? "divide" : what) << ": cannot split " << numerator
                               << " into " << denominator << " parts";
  MCORE_CHECK(numerator % denominator == 0)
      << (what.empty() ? std::string("divide") : what) << ": " << numerator
      << " is not divisible by " << denominator << " (choose a size that is a multiple of "
      << denominator << ")";
  return numerator / denominator;
}

ProcessGroupPtr resolve_tp_group(const ProcessGroupPtr& group) {
  if (group) return group;
  MCORE_CHECK(parallel_state::model_parallel_is_initialized())
      << "tensor_parallel: no tensor-model-parallel group; call "
         "parallel_state::initialize_model_parallel first (or pass a group explicitly)";
  return parallel_state::get_tensor_model_parallel_group();
}

std::vector<Tensor> split_tensor_along_last_dim(const Tensor& tensor, int64_t num_partitions,
                                                bool contiguous_split_chunks) {
  const int64_t last = tensor.size(-1);
  const int64_t n = divide(last, num_partitions,
                           "split_tensor_along_last_dim: last dim of " + shape_str(tensor.shape()));
  std::vector<Tensor> parts;
  parts.reserve(num_partitions);
  for (int64_t i = 0; i < num_partitions; ++i) {
    Tensor p = tensor.narrow(tensor.dim() - 1, i * n, n);
    parts.push_back(contiguous_split_chunks ? p.contiguous() : p);
  }
  return parts;
}

std::pair<int64_t, int64_t> vocab_range_from_per_partition_vocab_size(
    int64_t per_partition_vocab_size, int rank, int /*world_size*/) {
  const int64_t first = per_partition_vocab_size * rank;
  return {first, first + per_partition_vocab_size};
}

std::pair<int64_t, int64_t> vocab_range_from_global_vocab_size(int64_t global_vocab_size, int rank,
                                                               int world_size) {
  const int64_t per = divide(global_vocab_size, world_size,
                             "vocabulary size across tensor-parallel ranks (pad it with "
                             "vocab_size_with_padding)");
  return vocab_range_from_per_partition_vocab_size(per, rank, world_size);
}

int64_t vocab_size_with_padding(int64_t orig_vocab_size, int64_t make_vocab_size_divisible_by,
                                int64_t tensor_model_parallel_size) {
  MCORE_CHECK(orig_vocab_size > 0) << "vocab_size_with_padding: vocabulary size must be positive, "
                                   << "got " << orig_vocab_size;
  MCORE_CHECK(make_vocab_size_divisible_by > 0 && tensor_model_parallel_size > 0)
      << "vocab_size_with_padding: make_vocab_size_divisible_by (" << make_vocab_size_divisible_by
      << ") and tensor_model_parallel_size (" << tensor_model_parallel_size << ") must be positive";
  const int64_t multiple = make_vocab_size_divisible_by * tensor_model_parallel_size;
  return (orig_vocab_size + multiple - 1) / multiple * multiple;
}

}  // namespace mcore::tensor_parallel
