// The local backend (one process, no launcher): collectives are the identity or a copy, with
// the same argument checks as the mpi backend; send/recv to self go through a mailbox.
#include <gtest/gtest.h>

#include "mcore/comm/local_backend.h"
#include "tests/distributed/dist_util.h"

namespace mcore::testing {
namespace {

using comm::ReduceOp;

TEST(LocalBackend, CollectivesAreIdentityOrCopy) {
  auto g = comm::make_local_group(0);
  EXPECT_EQ(g->rank(), 0);
  EXPECT_EQ(g->size(), 1);
  EXPECT_EQ(g->backend_name(), "local");
  Tensor t = dist_tensor({3, 4}, DType::F32, 0);
  for (ReduceOp op : {ReduceOp::kSum, ReduceOp::kAvg, ReduceOp::kMax, ReduceOp::kMin}) {
    g->all_reduce(t, op);
    EXPECT_TENSOR_CLOSE(t, dist_tensor({3, 4}, DType::F32, 0), 0, 0);
  }
  Tensor out = zeros({3, 4}, DType::F32);
  g->all_gather(out, t);
  EXPECT_TENSOR_CLOSE(out, t, 0, 0);
  Tensor rs = zeros({3, 4}, DType::F32);
  g->reduce_scatter_async(rs, t)->wait();
  EXPECT_TENSOR_CLOSE(rs, t, 0, 0);
  g->broadcast(t, 0);
  Tensor a2a = zeros({3, 4}, DType::F32);
  g->all_to_all_single(a2a, t, {3}, {3});
  EXPECT_TENSOR_CLOSE(a2a, t, 0, 0);
  std::vector<Tensor> list;
  g->all_gather(list, t);
  ASSERT_EQ(list.size(), 1u);
  EXPECT_TENSOR_CLOSE(list[0], t, 0, 0);
  g->barrier();
  EXPECT_TRUE(g->barrier_async()->is_completed());
}

TEST(LocalBackend, SameArgumentChecksAsMpi) {
  auto g = comm::make_local_group(0);
  Tensor in = zeros({3, 4}, DType::F32);
  Tensor bad = zeros({4, 4}, DType::F32);
  try {
    g->all_gather(bad, in);
    FAIL() << "expected mcore::Error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("[4, 4]"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("[3, 4]"), std::string::npos) << e.what();
  }
  EXPECT_THROW(g->broadcast(in, 1), Error);
  EXPECT_THROW(g->all_to_all_single(in, in, {2}, {3}), Error);
  EXPECT_THROW(g->send(in, 1), Error);
}

TEST(LocalBackend, SendRecvToSelfThroughMailbox) {
  auto g = comm::make_local_group(0);
  Tensor a = dist_tensor({5}, DType::F32, 0, 1), b = dist_tensor({5}, DType::F32, 0, 2);
  // A ring of one: send first, then receive; tags select the message.
  std::vector<comm::P2POp> ops = {{comm::P2POp::kSend, a, 0, 1}, {comm::P2POp::kSend, b, 0, 2}};
  Tensor rb = zeros({5}, DType::F32), ra = zeros({5}, DType::F32);
  ops.push_back({comm::P2POp::kRecv, rb, 0, 2});
  ops.push_back({comm::P2POp::kRecv, ra, 0, 1});
  for (auto& w : g->batch_isend_irecv(ops)) w->wait();
  EXPECT_TENSOR_CLOSE(ra, a, 0, 0);
  EXPECT_TENSOR_CLOSE(rb, b, 0, 0);
  // A recv with nothing sent cannot complete in one process: an error, not a hang.
  Tensor c = zeros({5}, DType::F32);
  auto w = g->recv_async(c, 0, 3);
  EXPECT_FALSE(w->is_completed());
  EXPECT_THROW(w->wait(), Error);
}

TEST(LocalBackend, SplitGivesOneRankGroupOrNothing) {
  auto g = comm::make_local_group(0);
  EXPECT_EQ(g->split(-1, 0), nullptr);
  auto s = g->split(5, 0);
  ASSERT_NE(s, nullptr);
  EXPECT_EQ(s->size(), 1);
  EXPECT_EQ(s->global_ranks(), std::vector<int>{0});
}

}  // namespace
}  // namespace mcore::testing
