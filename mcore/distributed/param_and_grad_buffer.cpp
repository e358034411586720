#include "mcore/distributed/param_and_grad_buffer.h"

#include <cmath>
#include <numeric>

#include "mcore/comm/distributed.h"
#include "mcore/ops/elementwise.h"
#include "mcore/ops/reduction.h"
#include "mcore/tensor/factory.h"

namespace mcore::distributed {

namespace {
int64_t pad_to(int64_t value, int64_t divisor) {
  return (value + divisor - 1) / divisor * divisor;
}
}  // namespace

int64_t pad_param_start(int64_t param_start_index) {
  return pad_to(param_start_index, 64);
}

int64_t pad_bucket_end(int64_t bucket_end_index, int data_parallel_world_size,
                       bool pad_for_high_nccl_busbw) {
  int64_t divisor = std::lcm<int64_t>(data_parallel_world_size, 128);
  if (pad_for_high_nccl_busbw) divisor = std::lcm<int64_t>(divisor, int64_t{1} << 16);
  return pad_to(bucket_end_index, divisor);
}

ParamLayout compute_param_layout(const std::vector<nn::ParameterPtr>& params,
                                 std::optional<int64_t> bucket_size, int data_parallel_world_size,
                                 bool use_distributed_optimizer, bool pad_for_high_nccl_busbw) {
  MCORE_CHECK(!bucket_size || *bucket_size > 0)
      << "bucket size must be positive, got " << *bucket_size;
  MCORE_CHECK(data_parallel_world_size >= 1)
      << "data-parallel world size must be >= 1, got " << data_parallel_world_size;
  ParamLayout layout;
  layout.param_ranges.resize(params.size());
  int64_t param_start = 0, param_end = 0, bucket_start = 0;
  int bucket_id = 0;
  size_t in_bucket = 0;
  auto finalize_bucket = [&](int64_t end) {
    layout.per_bucket_numel_unpadded.push_back(end - bucket_start);
    const int64_t padded = use_distributed_optimizer ? pad_bucket_end(end, data_parallel_world_size,
                                                                      pad_for_high_nccl_busbw)
                                                     : end;
    layout.bucket_indices.emplace_back(bucket_start, padded);
    bucket_start = padded;
    ++bucket_id;
    in_bucket = 0;
  };
  // Reverse registration order: the order backward produces the gradients.
  for (size_t k = params.size(); k-- > 0;) {
    const nn::Parameter& p = *params[k];
    const bool own_bucket = use_distributed_optimizer && p.shared_embedding;
    if (use_distributed_optimizer) param_start = pad_param_start(param_start);
    if (own_bucket && in_bucket > 0) {
      finalize_bucket(param_start);
      param_start = bucket_start;
    }
    param_end = param_start + p.numel();
    layout.param_ranges[k] = {param_start, param_end, bucket_id};
    ++in_bucket;
    if ((bucket_size && param_end - bucket_start >= *bucket_size) || own_bucket) {
      finalize_bucket(param_end);
      param_start = bucket_start;
    } else {
      param_start = param_end;
    }
  }
  if (in_bucket > 0) finalize_bucket(param_end);
  return layout;
}

ParamAndGradBuffer::ParamAndGradBuffer(const DistributedDataParallelConfig& config,
                                       DType param_dtype, DType grad_dtype,
                                       std::vector<nn::ParameterPtr> params,
                                       comm::ProcessGroupPtr data_parallel_group,
                                       std::optional<int64_t> bucket_size,
                                       double gradient_scaling_factor)
    : param_dtype_(param_dtype),
      grad_dtype_(grad_dtype),
      params_(std::move(params)),
      data_parallel_group_(std::move(data_parallel_group)) {
  MCORE_CHECK(data_parallel_group_) << "ParamAndGradBuffer needs a data-parallel group";
  MCORE_CHECK(is_floating(grad_dtype_))
      << "gradient buffer dtype must be floating, got " << grad_dtype_;
  for (const auto& p : params_) {
    MCORE_CHECK(p) << "ParamAndGradBuffer: null parameter";
    MCORE_CHECK(p->dtype() == param_dtype_)
        << "ParamAndGradBuffer for " << param_dtype_ << " parameters got one of dtype "
        << p->dtype() << " (shape " << shape_str(p->shape()) << ")";
    MCORE_CHECK(param_to_bucket_.emplace(p.get(), -1).second)
        << "ParamAndGradBuffer: parameter of shape " << shape_str(p->shape()) << " given twice";
  }
  layout_ = compute_param_layout(params_, bucket_size, data_parallel_group_->size(),
                                 config.use_distributed_optimizer,
                                 config.pad_buckets_for_high_nccl_busbw);
  if (config.use_distributed_optimizer) {
    MCORE_CHECK(layout_.numel() % data_parallel_group_->size() == 0)
        << "grad buffer of " << layout_.numel() << " elements does not divide over "
        << data_parallel_group_->size() << " data-parallel ranks";
  }
  // On the parameters' device (DDP wraps a model already moved there with Module::to).
  const Device device = params_.empty() ? Device::cpu() : params_.front()->device();
  for (const auto& p : params_) {
    MCORE_CHECK(p->device() == device)
        << "ParamAndGradBuffer: parameters on " << device << " and " << p->device() << " (shape "
        << shape_str(p->shape()) << "); move the whole model to one device";
  }
  grad_data_ = zeros({layout_.numel()}, {grad_dtype_, device});

  buckets_.resize(layout_.bucket_indices.size());
  for (size_t b = 0; b < buckets_.size(); ++b) {
    auto [start, end] = layout_.bucket_indices[b];
    ParamAndGradBucket& bucket = buckets_[b];
    bucket.grad_data = grad_data_.narrow(0, start, end - start);
    bucket.offset = start;
    bucket.numel_unpadded = layout_.per_bucket_numel_unpadded[b];
    bucket.gradient_scaling_factor = gradient_scaling_factor;
    bucket.bucket_id = static_cast<int>(b);
  }
  for (size_t k = params_.size(); k-- > 0;) {
    nn::Parameter& p = *params_[k];
    const ParamRange& r = layout_.param_ranges[k];
    p.main_grad = grad_data_.narrow(0, r.start, r.end - r.start).view(p.shape());
    buckets_[r.bucket_id].params.push_back(params_[k]);
    param_to_bucket_[&p] = r.bucket_id;
  }
}

int64_t ParamAndGradBuffer::numel_unpadded() const {
  int64_t n = 0;
  for (int64_t v : layout_.per_bucket_numel_unpadded) n += v;
  return n;
}

int ParamAndGradBuffer::bucket_of(const nn::Parameter* param) const {
  auto it = param_to_bucket_.find(param);
  return it == param_to_bucket_.end() ? -1 : it->second;
}

void ParamAndGradBuffer::reset() {
  if (grad_data_.numel() > 0) grad_data_.zero_();
}

void ParamAndGradBuffer::scale_gradients(double factor) {
  if (grad_data_.numel() > 0) ops::scale_(grad_data_, factor);
}

// ---- bucket group ----

ParamAndGradBucketGroup::ParamAndGradBucketGroup(std::vector<ParamAndGradBucket*> buckets,
                                                 const DistributedDataParallelConfig& config,
                                                 comm::ProcessGroupPtr collective_group)
    : buckets_(std::move(buckets)), config_(config), group_(std::move(collective_group)) {
  MCORE_CHECK(group_) << "ParamAndGradBucketGroup needs a collective group";
  for (ParamAndGradBucket* b : buckets_) {
    for (const auto& p : b->params) {
      MCORE_CHECK(param_index_.emplace(p.get(), params_.size()).second)
          << "a parameter sits in two buckets of one group";
      params_.push_back(p.get());
    }
  }
  ready_counts_.assign(params_.size(), 0);
}

void ParamAndGradBucketGroup::register_grad_ready(const nn::Parameter* param,
                                                  bool force_all_reduce) {
  MCORE_CHECK(config_.overlap_grad_reduce)
      << "register_grad_ready should only be called when overlap_grad_reduce is on";
  if (!is_last_microbatch) return;
  auto it = param_index_.find(param);
  MCORE_CHECK(it != param_index_.end()) << "register_grad_ready: parameter of shape "
                                        << shape_str(param->shape()) << " is not in this bucket";
  ++ready_counts_[it->second];
  ++ready_total_;
  // First step: only count; finish_grad_sync launches. Later steps: launch once every
  // parameter reported as often as in the first step.
  if (!is_first_batch_ && !launched_ && ready_total_ == golden_total_ &&
      ready_counts_ == golden_counts_) {
    start_grad_sync(force_all_reduce);
  }
}

void ParamAndGradBucketGroup::check_grads_finite() const {
  for (ParamAndGradBucket* b : buckets_) {
    const double norm2 = ops::multi_tensor_l2norm_squared({b->grad_data});
    if (std::isfinite(norm2)) continue;
    // Name the first parameter whose gradient is not finite.
    std::string which = "?";
    for (const auto& p : b->params) {
      if (!std::isfinite(ops::multi_tensor_l2norm_squared({p->main_grad}))) {
        which = "a parameter of shape " + shape_str(p->shape());
        break;
      }
    }
    const int rank = comm::is_initialized() ? comm::get_rank() : 0;
    MCORE_FAIL() << "[rank " << rank << "] NaN or Inf in the gradients of bucket " << b->bucket_id
                 << " (" << which << ") before the data-parallel reduction";
  }
}

void ParamAndGradBucketGroup::start_grad_sync(bool force_all_reduce) {
  if (is_first_batch_ && launched_) return;  // first step: may be called again by finish
  MCORE_CHECK(!launched_) << "a bucket's gradient reduction was launched twice in one step";
  if (config_.check_for_nan_in_grad) check_grads_finite();
  for (ParamAndGradBucket* b : buckets_) {
    if (b->gradient_scaling_factor != 1.0 && b->grad_data.numel() > 0)
      ops::scale_(b->grad_data, b->gradient_scaling_factor);
  }
  const comm::ReduceOp op =
      config_.average_in_collective ? comm::ReduceOp::kAvg : comm::ReduceOp::kSum;
  const int n = group_->size();
  for (ParamAndGradBucket* b : buckets_) {
    if (b->grad_data.numel() == 0) continue;
    if (config_.use_distributed_optimizer && !force_all_reduce) {
      const int64_t shard = b->grad_data.numel() / n;
      Tensor local = b->grad_data.narrow(0, static_cast<int64_t>(group_->rank()) * shard, shard);
      works_.push_back(group_->reduce_scatter_async(local, b->grad_data, op));
    } else {
      works_.push_back(group_->all_reduce_async(b->grad_data, op));
    }
  }
  launched_ = true;
  if (!config_.overlap_grad_reduce) {
    for (auto& w : works_) w->wait();
    works_.clear();
  }
}

void ParamAndGradBucketGroup::finish_grad_sync(bool force_all_reduce) {
  if (finished_) return;
  if (!launched_) start_grad_sync(force_all_reduce);
  for (auto& w : works_) w->wait();
  works_.clear();
  finished_ = true;
}

bool ParamAndGradBucketGroup::poll() {
  bool done = true;
  for (auto& w : works_) done = w->is_completed() && done;
  return done;
}

void ParamAndGradBucketGroup::reset() {
  MCORE_CHECK(works_.empty())
      << "zero_grad_buffer while a gradient reduction is in flight: call finish_grad_sync "
         "(or finalize_model_grads) first";
  if (is_first_batch_ && ready_total_ > 0) {
    golden_counts_ = ready_counts_;
    golden_total_ = ready_total_;
    is_first_batch_ = false;
  }
  std::fill(ready_counts_.begin(), ready_counts_.end(), 0);
  ready_total_ = 0;
  is_last_microbatch = true;
  launched_ = false;
  finished_ = false;
}

}  // namespace mcore::distributed
