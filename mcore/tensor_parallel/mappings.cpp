#include "mcore/tensor_parallel/mappings.h"

#include "mcore/autograd/function.h"
#include "mcore/tensor/factory.h"
#include "mcore/tensor_parallel/utils.h"

namespace mcore::tensor_parallel {

using autograd::AutogradContext;
using autograd::Function;

namespace {

int64_t norm_dim(const Tensor& t, int64_t dim) {
  MCORE_CHECK(t.defined() && t.dim() > 0)
      << "tensor_parallel: cannot split or gather an undefined or 0-d tensor";
  return dim < 0 ? dim + t.dim() : dim;
}

}  // namespace

// The raw collectives take detached handles: they never record history, and views of a tensor
// that requires grad are refused while grad mode is on.
Tensor all_gather_along_dim(const Tensor& input_, int64_t dim, const ProcessGroupPtr& group) {
  const Tensor input = input_.detach();
  const int tp = group->size();
  dim = norm_dim(input, dim);
  Tensor in = input.contiguous();
  Shape out_shape = in.shape();
  out_shape[dim] *= tp;
  if (dim == 0) {
    Tensor out = empty(out_shape, {in.dtype(), in.device()});
    group->all_gather(out, in);
    return out;
  }
  // Gather rank-major ([tp, ...input]) then interleave into place along dim.
  Shape buf_shape = in.shape();
  buf_shape.insert(buf_shape.begin(), tp);
  Tensor buf = empty(buf_shape, {in.dtype(), in.device()});
  group->all_gather(buf, in);
  Tensor out = empty(out_shape, {in.dtype(), in.device()});
  const int64_t n = in.size(dim);
  for (int r = 0; r < tp; ++r) out.narrow(dim, r * n, n).copy_(buf.select(0, r));
  return out;
}

Tensor reduce_scatter_along_dim(const Tensor& input_, int64_t dim, const ProcessGroupPtr& group) {
  const Tensor input = input_.detach();
  const int tp = group->size();
  dim = norm_dim(input, dim);
  const int64_t n = divide(input.size(dim), tp,
                           "reduce-scatter of " + shape_str(input.shape()) + " along dim " +
                               std::to_string(dim) + " over " + std::to_string(tp) + " ranks");
  Shape out_shape = input.shape();
  out_shape[dim] = n;
  Tensor out = empty(out_shape, {input.dtype(), input.device()});
  if (dim == 0) {
    group->reduce_scatter(out, input.contiguous());
    return out;
  }
  // Reorder so rank r's chunk is the r-th block of a [tp, ...out] buffer.
  Shape buf_shape = out_shape;
  buf_shape.insert(buf_shape.begin(), tp);
  Tensor buf = empty(buf_shape, {input.dtype(), input.device()});
  for (int r = 0; r < tp; ++r) buf.select(0, r).copy_(input.narrow(dim, r * n, n));
  group->reduce_scatter(out, buf);
  return out;
}

Tensor split_along_dim(const Tensor& input_, int64_t dim, const ProcessGroupPtr& group) {
  const Tensor input = input_.detach();
  const int tp = group->size();
  dim = norm_dim(input, dim);
  const int64_t n = divide(input.size(dim), tp,
                           "split of " + shape_str(input.shape()) + " along dim " +
                               std::to_string(dim) + " over " + std::to_string(tp) + " ranks");
  return input.narrow(dim, group->rank() * n, n).contiguous();
}

Tensor all_reduce_copy(const Tensor& input, const ProcessGroupPtr& group) {
  Tensor out = input.detach().clone();
  group->all_reduce(out);
  return out;
}

namespace {

// Forward f, backward g: each mapping is a pair of the raw collectives above.
enum class Op {
  kIdentity,
  kAllReduce,
  kSplitLast,
  kGatherLast,
  kSplitFirst,
  kGatherFirst,
  kReduceScatterFirst
};

Tensor run(Op op, const Tensor& x, const ProcessGroupPtr& g) {
  switch (op) {
    case Op::kIdentity:
      return x;
    case Op::kAllReduce:
      return all_reduce_copy(x, g);
    case Op::kSplitLast:
      return split_along_dim(x, -1, g);
    case Op::kGatherLast:
      return all_gather_along_dim(x, -1, g);
    case Op::kSplitFirst:
      return split_along_dim(x, 0, g);
    case Op::kGatherFirst:
      return all_gather_along_dim(x, 0, g);
    case Op::kReduceScatterFirst:
      return reduce_scatter_along_dim(x, 0, g);
  }
  return x;
}

struct MappingFn : Function<MappingFn> {
  static Tensor forward(AutogradContext* ctx, const Tensor& x, Op fwd, Op bwd,
                        const ProcessGroupPtr& group) {
    ctx->save("bwd", bwd);
    ctx->save("group", group);
    return run(fwd, x, group);
  }
  static std::vector<Tensor> backward(AutogradContext* ctx, std::vector<Tensor> g) {
    return {run(ctx->get<Op>("bwd"), g[0], ctx->get<ProcessGroupPtr>("group"))};
  }
};

Tensor apply_mapping(const Tensor& x, Op fwd, Op bwd, ProcessGroupPtr group) {
  MCORE_CHECK(x.defined()) << "tensor_parallel mapping: undefined input tensor";
  group = resolve_tp_group(group);
  if (group->size() == 1) return x;  // Megatron: the identity when there is one rank
  return MappingFn::apply(x, fwd, bwd, group);
}

}  // namespace

Tensor copy_to_tensor_model_parallel_region(const Tensor& input, ProcessGroupPtr group) {
  return apply_mapping(input, Op::kIdentity, Op::kAllReduce, std::move(group));
}
Tensor reduce_from_tensor_model_parallel_region(const Tensor& input, ProcessGroupPtr group) {
  return apply_mapping(input, Op::kAllReduce, Op::kIdentity, std::move(group));
}
Tensor scatter_to_tensor_model_parallel_region(const Tensor& input, ProcessGroupPtr group) {
  return apply_mapping(input, Op::kSplitLast, Op::kGatherLast, std::move(group));
}
Tensor gather_from_tensor_model_parallel_region(const Tensor& input, ProcessGroupPtr group) {
  return apply_mapping(input, Op::kGatherLast, Op::kSplitLast, std::move(group));
}
Tensor scatter_to_sequence_parallel_region(const Tensor& input, ProcessGroupPtr group) {
  return apply_mapping(input, Op::kSplitFirst, Op::kGatherFirst, std::move(group));
}
Tensor gather_from_sequence_parallel_region(const Tensor& input, bool tensor_parallel_output_grad,
                                            ProcessGroupPtr group) {
  return apply_mapping(input, Op::kGatherFirst,
                       tensor_parallel_output_grad ? Op::kReduceScatterFirst : Op::kSplitFirst,
                       std::move(group));
}
Tensor reduce_scatter_to_sequence_parallel_region(const Tensor& input, ProcessGroupPtr group) {
  return apply_mapping(input, Op::kReduceScatterFirst, Op::kGatherFirst, std::move(group));
}

namespace {

// Rows exchanged by split sizes; the backward swaps the two lists.
Tensor exchange_rows(const Tensor& x_, const std::vector<int64_t>& out_splits,
                     const std::vector<int64_t>& in_splits, const ProcessGroupPtr& group) {
  const Tensor x = x_.detach().contiguous();
  int64_t rows = 0;
  for (int64_t n : out_splits) rows += n;
  Shape shape = x.shape();
  shape[0] = rows;
  Tensor out = empty(shape, {x.dtype(), x.device()});
  group->all_to_all_single(out, x, out_splits, in_splits);
  return out;
}

struct AllToAllFn : Function<AllToAllFn> {
  static Tensor forward(AutogradContext* ctx, const Tensor& x, const std::vector<int64_t>& out,
                        const std::vector<int64_t>& in, const ProcessGroupPtr& group) {
    ctx->save("out", out);
    ctx->save("in", in);
    ctx->save("group", group);
    return exchange_rows(x, out, in, group);
  }
  static std::vector<Tensor> backward(AutogradContext* ctx, std::vector<Tensor> g) {
    return {exchange_rows(g[0], ctx->get<std::vector<int64_t>>("in"),
                          ctx->get<std::vector<int64_t>>("out"),
                          ctx->get<ProcessGroupPtr>("group"))};
  }
};

}  // namespace

Tensor all_to_all(const Tensor& input, const std::vector<int64_t>& out_splits,
                  const std::vector<int64_t>& in_splits, const ProcessGroupPtr& group) {
  MCORE_CHECK(input.defined() && input.dim() >= 1 && group)
      << "all_to_all: needs a defined tensor of at least one dimension and a group";
  const size_t n = static_cast<size_t>(group->size());
  MCORE_CHECK(out_splits.size() == n && in_splits.size() == n)
      << "all_to_all: " << in_splits.size() << " input and " << out_splits.size()
      << " output splits for a group of " << n << " ranks";
  int64_t sent = 0;
  for (int64_t s : in_splits) sent += s;
  MCORE_CHECK(sent == input.size(0))
      << "all_to_all: the input splits sum to " << sent << " rows of " << input.size(0);
  if (n == 1) return input;
  return AllToAllFn::apply(input, out_splits, in_splits, group);
}

}  // namespace mcore::tensor_parallel
