#include "mcore/tensor_parallel/init.h"

#include "mcore/tensor/factory.h"
#include "mcore/tensor_parallel/mappings.h"
#include "mcore/tensor_parallel/utils.h"

namespace mcore::tensor_parallel {

namespace {

// Size of one of the world_size * stride chunks along the partition dim.
int64_t chunk_size(const Shape& global_shape, int partition_dim, int partition_stride,
                   int world_size) {
  MCORE_CHECK(partition_dim >= 0 && partition_dim < static_cast<int>(global_shape.size()))
      << "tensor_parallel: partition_dim " << partition_dim << " is not a dimension of "
      << shape_str(global_shape);
  MCORE_CHECK(partition_stride >= 1)
      << "tensor_parallel: partition_stride must be >= 1, got " << partition_stride;
  return divide(global_shape[partition_dim], static_cast<int64_t>(world_size) * partition_stride,
                "dim " + std::to_string(partition_dim) + " of " + shape_str(global_shape) +
                    " across " + std::to_string(world_size) + " tensor-parallel ranks x stride " +
                    std::to_string(partition_stride));
}

}  // namespace

Shape shard_shape(const Shape& global_shape, int partition_dim, int partition_stride,
                  int world_size) {
  Shape s = global_shape;
  s[partition_dim] =
      chunk_size(global_shape, partition_dim, partition_stride, world_size) * partition_stride;
  return s;
}

Tensor init_normal_shard(const Shape& global_shape, int partition_dim, int partition_stride,
                         int rank, int world_size, const nn::InitSpec& spec, DType dtype) {
  if (world_size == 1) return nn::init_normal(global_shape, spec, dtype);
  const int64_t c = chunk_size(global_shape, partition_dim, partition_stride, world_size);
  Shape local_shape = shard_shape(global_shape, partition_dim, partition_stride, world_size);
  Tensor local = empty(local_shape, DType::F32);
  for (int s = 0; s < partition_stride; ++s) {
    Shape offset(global_shape.size(), 0);
    offset[partition_dim] = (static_cast<int64_t>(s) * world_size + rank) * c;
    // The fill stages through a contiguous buffer, so a strided (dim 1) chunk is fine.
    Tensor part = local.narrow(partition_dim, s * c, c);
    normal_(part, {spec.seed, spec.stream, global_shape, offset}, 0.0, spec.std);
  }
  return dtype == DType::F32 ? local : local.to(dtype);
}

Tensor shard_tensor(const Tensor& full_, int partition_dim, int partition_stride, int rank,
                    int world_size) {
  const Tensor full = full_.detach();
  const int64_t c = chunk_size(full.shape(), partition_dim, partition_stride, world_size);
  Tensor local = empty(shard_shape(full.shape(), partition_dim, partition_stride, world_size),
                       {full.dtype(), full.device()});
  for (int s = 0; s < partition_stride; ++s) {
    local.narrow(partition_dim, s * c, c)
        .copy_(full.narrow(partition_dim, (static_cast<int64_t>(s) * world_size + rank) * c, c));
  }
  return local;
}

Tensor gather_shards(const Tensor& local_, int partition_dim, int partition_stride,
                     ProcessGroupPtr group) {
  group = resolve_tp_group(group);
  const Tensor local = local_.detach();
  const int ws = group->size();
  if (ws == 1) return local.clone();
  // Gathered rank-major: rank r's shard (its `stride` chunks) is block r.
  Tensor gathered = all_gather_along_dim(local, partition_dim, group);
  if (partition_stride == 1) return gathered;
  const int64_t c = local.size(partition_dim) / partition_stride;
  Tensor full = empty(gathered.shape(), {local.dtype(), local.device()});
  for (int r = 0; r < ws; ++r) {
    for (int s = 0; s < partition_stride; ++s) {
      full.narrow(partition_dim, (static_cast<int64_t>(s) * ws + r) * c, c)
          .copy_(gathered.narrow(partition_dim,
                                 (static_cast<int64_t>(r) * partition_stride + s) * c, c));
    }
  }
  return full;
}

Tensor gather_like_param(const Tensor& local, const nn::Parameter& param, ProcessGroupPtr group) {
  MCORE_CHECK(local.defined()) << "gather_like_param: undefined tensor (no gradient yet?)";
  if (!param.tensor_model_parallel) return local.detach().clone();
  return gather_shards(local, param.partition_dim, param.partition_stride, std::move(group));
}

Tensor gather_tensor_model_parallel_param(const nn::Parameter& param, ProcessGroupPtr group) {
  return gather_like_param(param, param, std::move(group));
}

void set_tensor_model_parallel_attributes(nn::Parameter& param, bool is_parallel, int dim,
                                          int stride) {
  param.tensor_model_parallel = is_parallel;
  param.partition_dim = dim;
  param.partition_stride = stride;
}

void copy_tensor_model_parallel_attributes(nn::Parameter& destination,
                                           const nn::Parameter& source) {
  set_tensor_model_parallel_attributes(destination, source.tensor_model_parallel,
                                       source.partition_dim, source.partition_stride);
}

}  // namespace mcore::tensor_parallel
