// split(): subgroups from MPI_Comm_split with their own ranks, global ranks, names and sequence
// numbers, and collectives running inside them (and concurrently in two of them).
#include <gtest/gtest.h>

#include "mcore/comm/distributed.h"
#include "mcore/comm/mpi_backend.h"
#include "tests/distributed/dist_util.h"

namespace mcore::testing {
namespace {

class Split : public ::testing::Test {
 protected:
  comm::ProcessGroupPtr g = comm::world();
  int rank = g->rank();
  int n = g->size();
};

TEST_F(Split, EvenOddGroupsRunTheirOwnCollectives) {
  const int color = rank % 2;
  auto sub = g->split(color, rank);
  ASSERT_NE(sub, nullptr);
  std::vector<int> members;
  for (int r = color; r < n; r += 2) members.push_back(r);
  EXPECT_EQ(sub->global_ranks(), members);
  EXPECT_EQ(sub->size(), static_cast<int>(members.size()));
  EXPECT_EQ(sub->rank(), rank / 2);
  EXPECT_EQ(sub->backend_name(), "mpi");
  // Sum over the members only.
  for (DType d : {DType::F32, DType::BF16, DType::I64}) {
    SCOPED_TRACE(dtype_trace(d));
    Tensor t = dist_tensor({21}, d, rank);
    sub->all_reduce_async(t)->wait();
    Tensor expected = formula_tensor({21}, d, [&](int64_t i) {
      double s = 0;
      for (int m : members) s += dist_value(d, m, i);
      return s;
    });
    EXPECT_TENSOR_CLOSE(t, expected, 0, 0);
  }
  // Gather inside the subgroup, in subgroup-rank order.
  Tensor in = dist_tensor({2}, DType::F32, rank);
  Tensor out = zeros({2 * sub->size()}, DType::F32);
  sub->all_gather(out, in);
  for (int k = 0; k < sub->size(); ++k) {
    EXPECT_TENSOR_CLOSE(out.narrow(0, 2 * k, 2), dist_tensor({2}, DType::F32, members[k]), 0, 0);
  }
}

TEST_F(Split, KeyOrdersRanksAndNegativeColorIsLeftOut) {
  // Rank 0 sits out; the others form one group in reverse order.
  auto sub = g->split(rank == 0 ? -1 : 0, n - rank);
  if (rank == 0) {
    EXPECT_EQ(sub, nullptr);
    return;
  }
  ASSERT_NE(sub, nullptr);
  std::vector<int> expected;
  for (int r = n - 1; r >= 1; --r) expected.push_back(r);
  EXPECT_EQ(sub->global_ranks(), expected);
  EXPECT_EQ(sub->rank(), n - 1 - rank);
  Tensor t = full({3}, rank, DType::I64);
  sub->broadcast(t, 0);  // subgroup rank 0 = world rank n - 1
  EXPECT_EQ(t.to(DType::F64).data<double>()[2], n - 1);
}

TEST_F(Split, NestedSplitAndConcurrentGroups) {
  // Pairs (0,1), (2,3), ...; then each pair splits again into singletons.
  auto pairs = g->split(rank / 2, rank);
  ASSERT_NE(pairs, nullptr);
  auto single = pairs->split(pairs->rank(), 0);
  ASSERT_NE(single, nullptr);
  EXPECT_EQ(single->size(), 1);
  EXPECT_EQ(single->global_ranks(), std::vector<int>{rank});
  // Ops in flight on the world and on the pair group at the same time.
  Tensor a = dist_tensor({40}, DType::F32, rank);
  Tensor b = dist_tensor({40}, DType::F32, rank, 3);
  auto wa = g->all_reduce_async(a);
  auto wb = pairs->all_reduce_async(b, comm::ReduceOp::kMax);
  wb->wait();
  wa->wait();
  const std::vector<int>& pm = pairs->global_ranks();
  Tensor ea = formula_tensor({40}, DType::F32, [&](int64_t i) {
    double s = 0;
    for (int r = 0; r < n; ++r) s += dist_value(DType::F32, r, i);
    return s;
  });
  Tensor eb = formula_tensor({40}, DType::F32, [&](int64_t i) {
    double m = -1e30;
    for (int r : pm) m = std::max(m, dist_value(DType::F32, r, i, 3));
    return m;
  });
  EXPECT_TENSOR_CLOSE(a, ea, 0, 0);
  EXPECT_TENSOR_CLOSE(b, eb, 0, 0);
  // Names and sequence numbers are per group.
  pairs->set_name("pairs");
  EXPECT_EQ(pairs->name(), "pairs");
  auto* mp = dynamic_cast<comm::MpiProcessGroup*>(pairs.get());
  ASSERT_NE(mp, nullptr);
  EXPECT_EQ(mp->sequence(), 2u);  // its split into singletons, then the all_reduce
}

}  // namespace
}  // namespace mcore::testing
