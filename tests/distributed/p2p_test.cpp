// Point-to-point: tagged send/recv (matched by tag, not by posting order) and the
// batch_isend_irecv ring pipeline and context parallelism use.
#include <gtest/gtest.h>

#include "mcore/comm/distributed.h"
#include "tests/distributed/dist_util.h"

namespace mcore::testing {
namespace {

class P2P : public ::testing::Test {
 protected:
  comm::ProcessGroupPtr g = comm::world();
  int rank = g->rank();
  int n = g->size();
};

TEST_F(P2P, TaggedSendRecvMatchByTag) {
  const int right = (rank + 1) % n, left = (rank + n - 1) % n;
  for (DType d : {DType::F32, DType::BF16, DType::I64}) {
    SCOPED_TRACE(dtype_trace(d));
    // Two messages to the right neighbour, tags 7 then 9; the receiver posts tag 9 first.
    Tensor a = dist_tensor({5, 3}, d, rank, 1), b = dist_tensor({4}, d, rank, 2);
    auto s1 = g->send_async(a, right, 7);
    auto s2 = g->send_async(b, right, 9);
    Tensor rb = zeros({4}, d), ra = zeros({5, 3}, d);
    auto r2 = g->recv_async(rb, left, 9);
    auto r1 = g->recv_async(ra, left, 7);
    r1->wait();
    r2->wait();
    s1->wait();
    s2->wait();
    EXPECT_TENSOR_CLOSE(ra, dist_tensor({5, 3}, d, left, 1), 0, 0);
    EXPECT_TENSOR_CLOSE(rb, dist_tensor({4}, d, left, 2), 0, 0);
  }
}

TEST_F(P2P, BlockingSendRecvPairs) {
  if (n < 2) GTEST_SKIP() << "needs two ranks";
  // Even ranks send to the next odd rank; the last rank of an odd world sits out.
  Tensor t = dist_tensor({100}, DType::F32, rank);
  if (rank % 2 == 0 && rank + 1 < n) {
    g->send(t, rank + 1, 3);
  } else if (rank % 2 == 1) {
    Tensor got = zeros({100}, DType::F32);
    g->recv(got, rank - 1, 3);
    EXPECT_TENSOR_CLOSE(got, dist_tensor({100}, DType::F32, rank - 1), 0, 0);
  }
  g->barrier();
}

TEST_F(P2P, BatchIsendIrecvRingBothDirections) {
  // Every rank sends to both neighbours and receives from both at once (the CP ring pattern);
  // with all ops posted before any wait nothing can deadlock, even with n == 1 or 2.
  const int right = (rank + 1) % n, left = (rank + n - 1) % n;
  for (int step = 0; step < 3; ++step) {
    Tensor to_right = dist_tensor({64, 2}, DType::F32, rank, step);
    Tensor to_left = dist_tensor({64, 2}, DType::BF16, rank, step + 10);
    Tensor from_left = zeros({64, 2}, DType::F32);
    Tensor from_right = zeros({64, 2}, DType::BF16);
    std::vector<comm::P2POp> ops = {
        {comm::P2POp::kSend, to_right, right, 1},
        {comm::P2POp::kRecv, from_left, left, 1},
        {comm::P2POp::kSend, to_left, left, 2},
        {comm::P2POp::kRecv, from_right, right, 2},
    };
    auto works = g->batch_isend_irecv(ops);
    ASSERT_EQ(works.size(), 4u);
    for (auto& w : works) w->wait();
    EXPECT_TENSOR_CLOSE(from_left, dist_tensor({64, 2}, DType::F32, left, step), 0, 0);
    EXPECT_TENSOR_CLOSE(from_right, dist_tensor({64, 2}, DType::BF16, right, step + 10), 0, 0);
  }
}

TEST_F(P2P, RecvIntoNonContiguousView) {
  const int right = (rank + 1) % n, left = (rank + n - 1) % n;
  Tensor send = dist_tensor({3, 4}, DType::F32, rank);
  Tensor base = zeros({4, 3}, DType::F32);
  Tensor view = base.transpose(0, 1);  // [3, 4], strided
  std::vector<comm::P2POp> ops = {{comm::P2POp::kRecv, view, left, 0},
                                  {comm::P2POp::kSend, send, right, 0}};
  for (auto& w : g->batch_isend_irecv(ops)) w->wait();
  EXPECT_TENSOR_CLOSE(view, dist_tensor({3, 4}, DType::F32, left), 0, 0);
}

TEST_F(P2P, SizeMismatchIsAnError) {
  if (n < 2) GTEST_SKIP() << "needs two ranks";
  // Rank 0 sends 6 elements, rank 1 expects 8: the receiver reports both sizes.
  if (rank == 0) {
    g->send(zeros({6}, DType::F32), 1, 4);
  } else if (rank == 1) {
    Tensor got = zeros({8}, DType::F32);
    try {
      g->recv(got, 0, 4);
      FAIL() << "expected mcore::Error";
    } catch (const Error& e) {
      const std::string msg = e.what();
      EXPECT_NE(msg.find("received 6"), std::string::npos) << msg;
      EXPECT_NE(msg.find("[8]"), std::string::npos) << msg;
    }
  }
  g->barrier();
}

}  // namespace
}  // namespace mcore::testing
