#include "mcore/comm/process_group.h"

#include <algorithm>

#include "mcore/base/error.h"
#include "mcore/comm/checks.h"
#include "mcore/tensor/cuda_device.h"
#include "mcore/tensor/factory.h"

namespace mcore::comm {

const char* reduce_op_name(ReduceOp op) {
  switch (op) {
    case ReduceOp::kSum:
      return "sum";
    case ReduceOp::kAvg:
      return "avg";
    case ReduceOp::kMax:
      return "max";
    case ReduceOp::kMin:
      return "min";
  }
  return "?";
}

Device group_device(const ProcessGroup& group) {
  return group.backend_name() == "nccl" ? current_cuda_device() : Device::cpu();
}

void ProcessGroup::all_gather(std::vector<Tensor>& outputs, const Tensor& input) {
  const int n = size();
  if (outputs.empty()) {
    for (int r = 0; r < n; ++r)
      outputs.push_back(empty(input.shape(), {input.dtype(), input.device()}));
  }
  MCORE_CHECK(static_cast<int>(outputs.size()) == n)
      << "all_gather into a list: " << outputs.size() << " output tensors for a group of " << n
      << " ranks (pass one tensor per rank, or an empty list to have them allocated)";
  for (int r = 0; r < n; ++r) {
    MCORE_CHECK(outputs[r].defined() && outputs[r].numel() == input.numel() &&
                outputs[r].dtype() == input.dtype())
        << "all_gather into a list: outputs[" << r << "] is "
        << (outputs[r].defined() ? outputs[r].str() : std::string("undefined"))
        << " but the input is " << input.str() << " (each output needs the input's size and dtype)";
  }
  // One collective into a flat buffer, then copies: the list form is a convenience, the flat form
  // is the fast path.
  Shape flat_shape = input.shape();
  if (flat_shape.empty()) flat_shape = {1};
  flat_shape[0] *= n;
  Tensor flat = empty(flat_shape, {input.dtype(), input.device()});
  Tensor in = input.dim() == 0 ? input.reshape({1}) : input;
  all_gather(flat, in);
  const int64_t rows = in.size(0);
  for (int r = 0; r < n; ++r)
    outputs[r].copy_(flat.narrow(0, r * rows, rows).reshape(outputs[r].shape()));
}

std::vector<WorkPtr> ProcessGroup::batch_isend_irecv(std::vector<P2POp>& ops) {
  // Every op is posted before any is waited on, so a ring (each rank sends right and receives
  // left) cannot deadlock.
  std::vector<WorkPtr> works;
  works.reserve(ops.size());
  for (P2POp& op : ops) {
    if (op.kind == P2POp::kSend) {
      works.push_back(send_async(op.tensor, op.peer, op.tag));
    } else {
      works.push_back(recv_async(op.tensor, op.peer, op.tag));
    }
  }
  return works;
}

namespace detail {

void check_peer(int r, int size, const char* op, const char* what) {
  MCORE_CHECK(r >= 0 && r < size) << op << ": " << what << " " << r
                                  << " is not a rank of this group (group ranks are 0.." << size - 1
                                  << "; pass the rank within the group, not the global rank)";
}

void check_same_dtype_device(const Tensor& a, const Tensor& b, const char* op) {
  MCORE_CHECK(a.dtype() == b.dtype())
      << op << ": output dtype " << a.dtype() << " differs from input dtype " << b.dtype()
      << " (output " << shape_str(a.shape()) << ", input " << shape_str(b.shape())
      << "); convert one of them first";
  MCORE_CHECK(a.device() == b.device()) << op << ": output on " << a.device() << " but input on "
                                        << b.device() << "; move them to the same device";
}

namespace {
// big = [size * n, rest...] or [size, n, rest...] for small = [n, rest...].
bool gathered_shape_ok(const Shape& big, const Shape& small, int size) {
  Shape s = small.empty() ? Shape{1} : small;
  if (shape_numel(big) != shape_numel(s) * size) return false;
  if (big.size() == s.size()) {
    if (big[0] != s[0] * size) return false;
    return std::equal(big.begin() + 1, big.end(), s.begin() + 1);
  }
  if (big.size() == s.size() + 1) {
    return big[0] == size && std::equal(big.begin() + 1, big.end(), s.begin());
  }
  return false;
}
}  // namespace

void check_all_gather(const Tensor& output, const Tensor& input, int size, const char* op) {
  check_same_dtype_device(output, input, op);
  MCORE_CHECK(gathered_shape_ok(output.shape(), input.shape(), size))
      << op << ": output " << shape_str(output.shape()) << " cannot hold " << size
      << " inputs of shape " << shape_str(input.shape()) << " (expected [" << size
      << " * n, ...] for input [n, ...], or [" << size << ", n, ...])";
}

void check_reduce_scatter(const Tensor& output, const Tensor& input, int size, const char* op) {
  check_same_dtype_device(output, input, op);
  MCORE_CHECK(gathered_shape_ok(input.shape(), output.shape(), size))
      << op << ": input " << shape_str(input.shape()) << " does not split into " << size
      << " chunks of the output shape " << shape_str(output.shape()) << " (expected input [" << size
      << " * n, ...] for output [n, ...])";
}

AllToAllSplits resolve_all_to_all(const Tensor& output, const Tensor& input,
                                  const std::vector<int64_t>& out_splits,
                                  const std::vector<int64_t>& in_splits, int size) {
  const char* op = "all_to_all_single";
  check_same_dtype_device(output, input, op);
  MCORE_CHECK(input.dim() >= 1 && output.dim() >= 1)
      << op << ": needs tensors with a first dimension to split; got input "
      << shape_str(input.shape()) << ", output " << shape_str(output.shape());
  MCORE_CHECK(std::equal(input.shape().begin() + 1, input.shape().end(), output.shape().begin() + 1,
                         output.shape().end()))
      << op << ": input " << shape_str(input.shape()) << " and output " << shape_str(output.shape())
      << " must agree in every dimension but the first";
  AllToAllSplits s;
  s.row_numel = input.size(0) == 0
                    ? shape_numel(Shape(input.shape().begin() + 1, input.shape().end()))
                    : input.numel() / input.size(0);
  auto resolve = [&](const std::vector<int64_t>& splits, const Tensor& t, const char* which) {
    std::vector<int64_t> rows;
    if (splits.empty()) {
      MCORE_CHECK(t.size(0) % size == 0)
          << op << ": " << which << " " << shape_str(t.shape()) << " has " << t.size(0)
          << " rows, not divisible by the group size " << size << "; pass explicit " << which
          << "_splits";
      rows.assign(size, t.size(0) / size);
      return rows;
    }
    MCORE_CHECK(static_cast<int>(splits.size()) == size)
        << op << ": " << splits.size() << " " << which << "_splits for a group of " << size
        << " ranks (one count per rank)";
    int64_t total = 0;
    for (int64_t v : splits) {
      MCORE_CHECK(v >= 0) << op << ": negative " << which << "_split " << v;
      total += v;
    }
    MCORE_CHECK(total == t.size(0))
        << op << ": " << which << "_splits sum to " << total << " rows but the " << which << " "
        << shape_str(t.shape()) << " has " << t.size(0);
    return splits;
  };
  s.out_rows = resolve(out_splits, output, "output");
  s.in_rows = resolve(in_splits, input, "input");
  return s;
}

bool overlaps(const Tensor& a, const Tensor& b) {
  if (!a.defined() || !b.defined() || a.nbytes() == 0 || b.nbytes() == 0) return false;
  if (a.storage() != b.storage()) return false;
  auto lo_a = reinterpret_cast<uintptr_t>(a.data_ptr());
  auto lo_b = reinterpret_cast<uintptr_t>(b.data_ptr());
  // Conservative extent for strided views: first to last addressed byte.
  auto extent = [](const Tensor& t) {
    int64_t span = 1;
    for (int64_t d = 0; d < t.dim(); ++d) span += (t.size(d) - 1) * t.stride(d);
    return static_cast<uintptr_t>(span) * t.element_size();
  };
  return lo_a < lo_b + extent(b) && lo_b < lo_a + extent(a);
}

}  // namespace detail
}  // namespace mcore::comm
