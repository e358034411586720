#include "mcore/tensor_parallel/layers.h"

#include <algorithm>
#include <cstring>

#include "mcore/autograd/engine.h"
#include "mcore/autograd/function.h"
#include "mcore/nn/functional/basic.h"
#include "mcore/nn/functional/embedding.h"
#include "mcore/nn/functional/linear.h"
#include "mcore/ops/device_check.h"
#include "mcore/ops/embedding.h"
#include "mcore/tensor/factory.h"
#include "mcore/tensor_parallel/init.h"
#include "mcore/tensor_parallel/linear_with_comm.h"
#include "mcore/tensor_parallel/mappings.h"
#include "mcore/tensor_parallel/utils.h"

namespace mcore::tensor_parallel {

using autograd::AutogradContext;
using autograd::Function;

namespace {

Tensor init_or_zeros(const Shape& global_shape, int dim, int stride, const ProcessGroupPtr& g,
                     bool perform, const nn::InitSpec& spec, DType dtype) {
  if (!perform) return zeros(shard_shape(global_shape, dim, stride, g->size()), dtype);
  return init_normal_shard(global_shape, dim, stride, g->rank(), g->size(), spec, dtype);
}

void check_divisible(const char* layer, const char* what, int64_t size, int64_t tp,
                     int64_t stride = 1) {
  MCORE_CHECK(size > 0) << layer << ": " << what << " must be positive, got " << size;
  MCORE_CHECK(size % (tp * stride) == 0)
      << layer << ": " << what << " " << size << " is not divisible by the tensor-model-parallel "
      << "size " << tp << (stride > 1 ? " x partition_stride " + std::to_string(stride) : "")
      << "; choose a size that is a multiple of " << tp * stride
      << " or a smaller tensor_model_parallel_size";
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// ColumnParallelLinear

ColumnParallelLinear::ColumnParallelLinear(int64_t input_size, int64_t output_size,
                                           ColumnParallelLinearOptions o)
    : input_size_(input_size), output_size_(output_size), options_(std::move(o)) {
  tp_group_ = resolve_tp_group(options_.tp_group);
  const int tp = tp_group_->size();
  MCORE_CHECK(input_size > 0) << "ColumnParallelLinear: input_size must be positive, got "
                              << input_size;
  check_divisible("ColumnParallelLinear", "output_size", output_size, tp,
                  options_.partition_stride);
  MCORE_CHECK(!(options_.gather_output && options_.sequence_parallel))
      << "ColumnParallelLinear: gather_output and sequence_parallel cannot both be set "
         "(the output of a sequence-parallel layer stays split)";
  // Megatron turns sequence parallelism off (with a warning) when there is one rank; the
  // mappings are identities then anyway.
  if (tp == 1) options_.sequence_parallel = false;
  output_size_per_partition_ = output_size / tp;
  if (!options_.skip_weight_param_allocation) {
    weight_ = register_parameter(
        "weight", init_or_zeros({output_size, input_size}, 0, options_.partition_stride, tp_group_,
                                options_.perform_initialization, options_.init, options_.dtype));
    set_tensor_model_parallel_attributes(*weight_, true, 0, options_.partition_stride);
  }
  if (options_.bias) {
    bias_ = register_parameter("bias", zeros({output_size_per_partition_}, options_.dtype));
    set_tensor_model_parallel_attributes(*bias_, true, 0, options_.partition_stride);
    bias_->no_weight_decay = true;
  }
}

LinearOutput ColumnParallelLinear::forward(const Tensor& input, const Tensor& weight) const {
  Tensor w = weight.defined() ? weight : (weight_ ? Tensor(*weight_) : Tensor());
  MCORE_CHECK(w.defined()) << "ColumnParallelLinear: built with skip_weight_param_allocation, so "
                              "forward() needs a weight ["
                           << output_size_per_partition_ << ", " << input_size_ << "]";
  MCORE_CHECK(w.dim() == 2 && w.size(0) == output_size_per_partition_ && w.size(1) == input_size_)
      << "ColumnParallelLinear: weight " << shape_str(w.shape()) << " does not match the layer's ["
      << output_size_per_partition_ << ", " << input_size_ << "] (output_size " << output_size_
      << " / tp " << tp_group_->size() << ")";
  MCORE_CHECK(input.defined() && input.dim() >= 1 && input.size(-1) == input_size_)
      << "ColumnParallelLinear: input "
      << (input.defined() ? shape_str(input.shape()) : "undefined") << " must end in input_size "
      << input_size_;
  // The input all-gather (SP) or the backward all-reduce of the input gradient (the
  // copy_to region) runs inside the GEMM's autograd function, overlapped with the
  // weight-gradient GEMM, and under SP only the local input chunk is saved for backward.
  Tensor b = (bias_ && !options_.skip_bias_add) ? Tensor(*bias_) : Tensor();
  const bool tp_many = tp_group_->size() > 1;
  Tensor output_parallel = linear_with_grad_accumulation_and_async_allreduce(
      input, w, b, /*allreduce_dgrad=*/tp_many && !options_.sequence_parallel,
      /*sequence_parallel=*/options_.sequence_parallel && tp_many, tp_group_);
  LinearOutput out;
  out.output = options_.gather_output
                   ? gather_from_tensor_model_parallel_region(output_parallel, tp_group_)
                   : output_parallel;
  if (bias_ && options_.skip_bias_add) out.output_bias = *bias_;
  return out;
}

// ---------------------------------------------------------------------------------------------
// RowParallelLinear

RowParallelLinear::RowParallelLinear(int64_t input_size, int64_t output_size,
                                     RowParallelLinearOptions o)
    : input_size_(input_size), output_size_(output_size), options_(std::move(o)) {
  tp_group_ = resolve_tp_group(options_.tp_group);
  const int tp = tp_group_->size();
  MCORE_CHECK(output_size > 0) << "RowParallelLinear: output_size must be positive, got "
                               << output_size;
  check_divisible("RowParallelLinear", "input_size", input_size, tp);
  MCORE_CHECK(!options_.sequence_parallel || options_.input_is_parallel)
      << "RowParallelLinear: sequence_parallel needs input_is_parallel=true (its input is the "
         "split output of a ColumnParallelLinear)";
  input_size_per_partition_ = input_size / tp;
  weight_ = register_parameter(
      "weight", init_or_zeros({output_size, input_size}, 1, 1, tp_group_,
                              options_.perform_initialization, options_.init, options_.dtype));
  set_tensor_model_parallel_attributes(*weight_, true, 1, 1);
  if (options_.bias) {
    bias_ = register_parameter("bias", zeros({output_size}, options_.dtype));
    // Under SP each rank sees only its part of the sequence: the bias gradient must be
    // all-reduced over TP (finalize_model_grads does that for parameters marked so).
    bias_->sequence_parallel = options_.sequence_parallel;
    bias_->no_weight_decay = true;
  }
}

LinearOutput RowParallelLinear::forward(const Tensor& input) const {
  const int64_t expect = options_.input_is_parallel ? input_size_per_partition_ : input_size_;
  MCORE_CHECK(input.defined() && input.dim() >= 1 && input.size(-1) == expect)
      << "RowParallelLinear: input " << (input.defined() ? shape_str(input.shape()) : "undefined")
      << " must end in " << expect
      << (options_.input_is_parallel ? " (input_size / tp: the input is already split)"
                                     : " (input_size)");
  Tensor input_parallel = options_.input_is_parallel
                              ? input
                              : scatter_to_tensor_model_parallel_region(input, tp_group_);
  Tensor output_parallel = F::linear(input_parallel, *weight_);
  Tensor output = options_.sequence_parallel
                      ? reduce_scatter_to_sequence_parallel_region(output_parallel, tp_group_)
                      : reduce_from_tensor_model_parallel_region(output_parallel, tp_group_);
  LinearOutput out;
  if (bias_ && !options_.skip_bias_add) {
    out.output = F::add(output, *bias_);
  } else {
    out.output = output;
    if (bias_) out.output_bias = *bias_;
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// VocabParallelEmbedding

namespace {

// Ids as this shard's rows: id - start inside [start, end), -1 outside. Checks every id against
// the whole vocabulary (serially, before any parallel kernel), since an id beyond the padded
// vocabulary would otherwise silently look up zeros on every rank.
Tensor local_ids(const Tensor& ids, int64_t start, int64_t end, int64_t vocab) {
  MCORE_CHECK(ids.dtype() == DType::I64 || ids.dtype() == DType::I32)
      << "VocabParallelEmbedding: ids must be int64 or int32, got " << ids.dtype() << " "
      << shape_str(ids.shape());
  Tensor t = ids.to(DType::I64).contiguous();
  if (t.is_same(ids) || t.storage() == ids.storage()) t = t.clone();
  int64_t* p = t.data<int64_t>();
  for (int64_t n = 0; n < t.numel(); ++n) {
    const int64_t id = p[n];
    MCORE_CHECK(id >= 0 && id < vocab)
        << "VocabParallelEmbedding: id " << id << " at flat index " << n << " of ids "
        << shape_str(ids.shape()) << " is outside the vocabulary [0, " << vocab << ")";
    p[n] = (id >= start && id < end) ? id - start : -1;
  }
  return t;
}

// Masked lookup: a row copy (any dtype, bytes only) or zeros for ids of other shards.
struct ShardLookupFn : Function<ShardLookupFn> {
  static Tensor forward(AutogradContext* ctx, const Tensor& weight_in, const Tensor& lids) {
    const Tensor weight = weight_in.contiguous();
    const int64_t H = weight.size(1), N = lids.numel();
    Shape out_shape = lids.shape();
    out_shape.push_back(H);
    Tensor out = empty(out_shape, {weight.dtype(), weight.device()});
    const size_t row_bytes = static_cast<size_t>(H) * weight.element_size();
    const char* wp = static_cast<const char*>(weight.data_ptr());
    char* op = static_cast<char*>(out.data_ptr());
    const int64_t* ip = lids.data<int64_t>();
#pragma omp parallel for schedule(static) if (N * H > 32768)
    for (int64_t n = 0; n < N; ++n) {
      char* dst = op + n * row_bytes;
      if (ip[n] >= 0) {
        std::memcpy(dst, wp + ip[n] * row_bytes, row_bytes);
      } else {
        std::memset(dst, 0, row_bytes);  // all-zero bits are +0 in every float dtype
      }
    }
    ctx->save_for_backward({lids});
    ctx->save("rows", weight.size(0));
    return out;
  }
  static std::vector<Tensor> backward(AutogradContext* ctx, std::vector<Tensor> g) {
    const Tensor& lids = ctx->saved_tensors()[0];
    const int64_t N = lids.numel();
    // Tokens of other shards contribute nothing: zero their rows, then point them at row 0 (on
    // copies, made only when there are such tokens: with one shard there never are).
    const int64_t* lp = lids.data<int64_t>();
    if (std::none_of(lp, lp + N, [](int64_t id) { return id < 0; })) {
      // With tied embeddings the output layer's weight gradient is already summed there: add
      // the looked-up rows into it rather than building a dense [V, H] gradient (zeros almost
      // everywhere) and adding that, which costs two passes over the whole table.
      Tensor* slot = autograd::exclusive_input_grad_slot(0);
      const int64_t rows = ctx->get<int64_t>("rows");
      if (slot && slot->device().is_cpu() && g[0].device().is_cpu() &&
          slot->dtype() == g[0].dtype() && slot->shape() == Shape{rows, g[0].size(-1)}) {
        ops::embedding_backward_add_(*slot, g[0], lids);
        return {Tensor(), Tensor()};
      }
      return {ops::embedding_backward(g[0], lids, rows), Tensor()};
    }
    Tensor grad = g[0].contiguous().clone();
    Tensor ids = lids.clone();
    const size_t row_bytes = static_cast<size_t>(grad.size(-1)) * grad.element_size();
    char* gp = static_cast<char*>(grad.data_ptr());
    int64_t* ip = ids.data<int64_t>();
    for (int64_t n = 0; n < N; ++n) {
      if (ip[n] < 0) {
        std::memset(gp + n * row_bytes, 0, row_bytes);
        ip[n] = 0;
      }
    }
    return {ops::embedding_backward(grad, ids, ctx->get<int64_t>("rows")), Tensor()};
  }
};

// The lookup for a weight on a GPU. One shard: the ids are the rows (the CUDA kernel traps on an
// id outside [0, V); no host sync). Several shards: the ids are read on the host (one small copy)
// to be checked and split, then rows of other shards are zeroed by a 0/1 multiplier, whose
// gradient zeroes their rows in the backward as the CPU path does.
Tensor device_shard_lookup(const Tensor& ids, const Tensor& weight, int64_t start, int64_t end,
                           int64_t vocab) {
  MCORE_CHECK(ids.dtype() == DType::I64 || ids.dtype() == DType::I32)
      << "VocabParallelEmbedding: ids must be int64 or int32, got " << ids.dtype() << " "
      << shape_str(ids.shape());
  const Device dev = weight.device();
  if (start == 0 && end == vocab) return F::embedding(ids.to(dev), weight);
  Tensor lids = local_ids(ids.to(Device::cpu()), start, end, vocab);
  Shape keep_shape = lids.shape();
  keep_shape.push_back(1);
  Tensor keep = empty(keep_shape, DType::F32);
  int64_t* ip = lids.data<int64_t>();
  float* kp = keep.data<float>();
  for (int64_t n = 0; n < lids.numel(); ++n) {
    kp[n] = ip[n] >= 0 ? 1.0f : 0.0f;
    if (ip[n] < 0) ip[n] = 0;
  }
  Tensor rows = F::embedding(lids.to(dev), weight);
  return F::mul(rows, keep.to(weight.dtype()).to(dev));
}

}  // namespace

VocabParallelEmbedding::VocabParallelEmbedding(int64_t num_embeddings, int64_t embedding_dim,
                                               VocabParallelEmbeddingOptions o)
    : num_embeddings_(num_embeddings), embedding_dim_(embedding_dim), options_(std::move(o)) {
  tp_group_ = resolve_tp_group(options_.tp_group);
  const int tp = tp_group_->size();
  MCORE_CHECK(embedding_dim > 0) << "VocabParallelEmbedding: embedding_dim must be positive, got "
                                 << embedding_dim;
  MCORE_CHECK(num_embeddings > 0 && num_embeddings % tp == 0)
      << "VocabParallelEmbedding: num_embeddings " << num_embeddings
      << " is not divisible by the tensor-model-parallel size " << tp
      << "; pad the vocabulary with vocab_size_with_padding(" << num_embeddings
      << ", make_vocab_size_divisible_by, " << tp << ") (gives "
      << (num_embeddings > 0 ? vocab_size_with_padding(num_embeddings, 1, tp) : 0) << " here)";
  std::tie(vocab_start_index_, vocab_end_index_) =
      vocab_range_from_global_vocab_size(num_embeddings, tp_group_->rank(), tp);
  weight_ = register_parameter(
      "weight", init_or_zeros({num_embeddings, embedding_dim}, 0, 1, tp_group_,
                              options_.perform_initialization, options_.init, options_.dtype));
  set_tensor_model_parallel_attributes(*weight_, true, 0, 1);
}

Tensor VocabParallelEmbedding::forward(const Tensor& ids) const {
  MCORE_CHECK(ids.defined()) << "VocabParallelEmbedding: undefined ids";
  Tensor output_parallel;
  if (weight_->device().is_cuda()) {
    output_parallel = device_shard_lookup(ids, Tensor(*weight_), vocab_start_index_,
                                          vocab_end_index_, num_embeddings_);
  } else {
    ops::check_cpu({ids, *weight_}, "VocabParallelEmbedding");
    Tensor lids = local_ids(ids, vocab_start_index_, vocab_end_index_, num_embeddings_);
    output_parallel = ShardLookupFn::apply(Tensor(*weight_), lids);
  }
  if (options_.reduce_scatter_embeddings) {
    MCORE_CHECK(ids.dim() == 2) << "VocabParallelEmbedding: reduce_scatter_embeddings needs ids "
                                   "[b, s], got "
                                << shape_str(ids.shape());
    // [b, s, h] -> [s, b, h], then each rank keeps its sequence chunk of the summed lookups.
    output_parallel = F::contiguous(F::transpose(output_parallel, 0, 1));
    return reduce_scatter_to_sequence_parallel_region(output_parallel, tp_group_);
  }
  return reduce_from_tensor_model_parallel_region(output_parallel, tp_group_);
}

}  // namespace mcore::tensor_parallel
