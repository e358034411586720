// transformer/context_parallel without a process group: the global place of a rank's rows, and
// sequence_dropout, which must drop exactly the elements the whole sequence's dropout drops at
// the rows the rank holds - for each context-parallel rank and for every tensor-parallel slice
// of its rows under sequence parallelism, including a slice that straddles its two chunks.
#include <gtest/gtest.h>

#include "mcore/nn/functional.h"
#include "mcore/tensor/factory.h"
#include "mcore/transformer/context_parallel.h"
#include "tests/common/test_util.h"

namespace mcore::testing {
namespace {

using transformer::ContextParallelLayout;

constexpr uint64_t kSeed = 77, kStream = 9;

TEST(ContextParallel, GlobalRowOfLocalRows) {
  const ContextParallelLayout l{3, 1, nullptr};  // chunks 1 and 4 of 6
  EXPECT_EQ(l.global_chunk(0), 1);
  EXPECT_EQ(l.global_chunk(1), 4);
  // local_len 8: chunks of 4 rows.
  EXPECT_EQ(l.global_row(0, 8), 4);
  EXPECT_EQ(l.global_row(3, 8), 7);
  EXPECT_EQ(l.global_row(4, 8), 16);
  EXPECT_EQ(l.global_row(7, 8), 19);
}

TEST(ContextParallel, SliceRefusesUnevenSequence) {
  const ContextParallelLayout l{2, 0, nullptr};
  EXPECT_THROW(transformer::slice_for_context_parallel_rank(zeros({2, 6}), 1, l), Error);
}

TEST(ContextParallel, SequenceDropoutMatchesTheWholeSequence) {
  const double p = 0.3;
  const int64_t s = 24, b = 2, h = 5;
  Tensor x = randn({s, b, h}, {11, 1});
  Tensor whole = F::dropout(x, p, true, kSeed, kStream);
  for (int cp : {2, 3}) {
    for (int r = 0; r < cp; ++r) {
      const ContextParallelLayout l{cp, r, nullptr};
      const Tensor local = transformer::slice_for_context_parallel_rank(x, 0, l);
      const Tensor expect = transformer::slice_for_context_parallel_rank(whole, 0, l);
      const int64_t len = local.size(0);
      // tp 1: both chunks (one two-slab map); 2: a chunk each; 3 (len 12): the middle slice
      // straddles the chunk boundary with two rows on each side; 4: half chunks.
      for (int tp : {1, 2, 3, 4}) {
        if (len % tp) continue;
        const int64_t n = len / tp;
        for (int t = 0; t < tp; ++t) {
          SCOPED_TRACE("cp " + std::to_string(cp) + " rank " + std::to_string(r) + " tp " +
                       std::to_string(tp) + " slice " + std::to_string(t));
          Tensor got = transformer::sequence_dropout(local.narrow(0, t * n, n).contiguous(), p,
                                                     true, kSeed, kStream, t * n, len, l);
          EXPECT_TENSOR_CLOSE(got, expect.narrow(0, t * n, n).contiguous(), 0, 0);
        }
      }
      // An uneven split: rows [1, 7) of 8 cover 3 rows of one chunk and 3 of the other, and
      // rows [2, 7) 2 and 3.
      if (len == 8) {
        for (int64_t first : {1, 2}) {
          Tensor got = transformer::sequence_dropout(local.narrow(0, first, 7 - first).contiguous(),
                                                     p, true, kSeed, kStream, first, len, l);
          EXPECT_TENSOR_CLOSE(got, expect.narrow(0, first, 7 - first).contiguous(), 0, 0);
        }
      }
    }
  }
  // Inactive: the tensor itself.
  const ContextParallelLayout l{2, 1, nullptr};
  Tensor same = transformer::sequence_dropout(x, p, false, kSeed, kStream, 0, s, l);
  EXPECT_EQ(same.data_ptr(), x.data_ptr());
}

}  // namespace
}  // namespace mcore::testing
