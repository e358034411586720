#include "mcore/transformer/context_parallel.h"

#include <vector>

#include "mcore/base/error.h"
#include "mcore/nn/functional.h"
#include "mcore/parallel_state/parallel_state.h"
#include "mcore/tensor/factory.h"
#include "mcore/tensor_parallel/mappings.h"

namespace mcore::transformer {

int64_t ContextParallelLayout::global_row(int64_t i, int64_t local_len) const {
  const int64_t c = local_len / 2;
  return i < c ? global_chunk(0) * c + i : global_chunk(1) * c + (i - c);
}

ContextParallelLayout context_parallel_layout(int64_t context_parallel_size) {
  ContextParallelLayout l;
  if (context_parallel_size <= 1) return l;
  MCORE_CHECK(parallel_state::model_parallel_is_initialized())
      << "context_parallel_size " << context_parallel_size
      << " needs parallel_state::initialize_model_parallel(..., context_parallel_size) first";
  l.group = parallel_state::get_context_parallel_group();
  MCORE_CHECK(l.group->size() == context_parallel_size)
      << "config.context_parallel_size is " << context_parallel_size
      << " but the context-parallel group has " << l.group->size()
      << " ranks: set the config from parallel_state";
  l.size = l.group->size();
  l.rank = l.group->rank();
  return l;
}

Tensor slice_for_context_parallel_rank(const Tensor& t, int64_t dim,
                                       const ContextParallelLayout& cp) {
  if (cp.size == 1) return t;
  dim = dim < 0 ? dim + t.dim() : dim;
  const int64_t len = t.size(dim);
  MCORE_CHECK(len % (2 * cp.size) == 0)
      << "context parallelism: a sequence of " << len << " cannot be cut into 2 x " << cp.size
      << " chunks (" << shape_str(t.shape()) << ", dim " << dim
      << "); the sequence length must be a multiple of 2 * context-parallel-size";
  const int64_t c = len / (2 * cp.size);
  Shape shape = t.shape();
  shape[dim] = 2 * c;
  Tensor out = empty(shape, {t.dtype(), t.device()});
  for (int j = 0; j < 2; ++j)
    out.narrow(dim, j * c, c).copy_(t.narrow(dim, cp.global_chunk(j) * c, c));
  return out;
}

Tensor gather_sequence_from_context_parallel_region(const Tensor& x,
                                                    const ContextParallelLayout& cp) {
  if (cp.size == 1) return x;
  MCORE_CHECK(x.size(0) % 2 == 0)
      << "context parallelism: a rank's local sequence must hold two equal chunks, got "
      << shape_str(x.shape());
  // Rank-major: [rank 0's chunks 0, 2cp-1 | rank 1's chunks 1, 2cp-2 | ...]; the backward sums
  // every rank's partial key/value gradient and keeps this rank's rows.
  Tensor all = tensor_parallel::gather_from_sequence_parallel_region(x, true, cp.group);
  const int64_t c = x.size(0) / 2;
  std::vector<Tensor> chunks;
  for (int64_t g = 0; g < 2 * cp.size; ++g) {
    const int64_t owner = g < cp.size ? g : 2 * cp.size - 1 - g;
    const int64_t local = g < cp.size ? 0 : 1;
    chunks.push_back(F::narrow(all, 0, (2 * owner + local) * c, c));
  }
  return F::cat(chunks, 0);
}

Tensor sequence_dropout(const Tensor& x, double p, bool training, uint64_t seed, uint64_t stream,
                        int64_t first_row, int64_t local_len, const ContextParallelLayout& cp) {
  if (!training || p == 0.0) return x;
  const int64_t rows = x.size(0);
  const uint64_t row_numel = static_cast<uint64_t>(rows > 0 ? x.numel() / rows : 0);
  if (cp.size == 1)
    return F::dropout(x, p, true, seed, stream, static_cast<uint64_t>(first_row) * row_numel);
  // The rows fall in at most two runs of the global sequence: one per local chunk.
  const int64_t c = local_len / 2;
  struct Run {
    int64_t first, len, global;
  };
  std::vector<Run> runs;
  for (int64_t i = first_row; i < first_row + rows;) {
    const int64_t end = i < c ? std::min(first_row + rows, c) : first_row + rows;
    runs.push_back({i - first_row, end - i, cp.global_row(i, local_len)});
    i = end;
  }
  auto offset_of = [&](const Run& r) { return static_cast<uint64_t>(r.global) * row_numel; };
  if (runs.size() == 1) return F::dropout(x, p, true, seed, stream, offset_of(runs[0]));
  if (runs[0].len == runs[1].len) {
    // Two equal slabs: one call.
    ops::DropoutIndexMap map;
    map.offset = offset_of(runs[0]);
    map.rows = 1;
    map.cols = runs[0].len * static_cast<int64_t>(row_numel);
    map.slab_stride = offset_of(runs[1]) - offset_of(runs[0]);
    return F::dropout(x, p, true, seed, stream, map);
  }
  std::vector<Tensor> parts;
  for (const Run& r : runs)
    parts.push_back(
        F::dropout(F::narrow(x, 0, r.first, r.len), p, true, seed, stream, offset_of(r)));
  return F::cat(parts, 0);
}

}  // namespace mcore::transformer
