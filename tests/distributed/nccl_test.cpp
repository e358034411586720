// The nccl backend on CUDA tensors: collectives against values each rank computes itself,
// uneven all_to_all, a send/recv ring, barrier, and several communicators from
// ncclCommSplit used concurrently. Needs one GPU per rank; skipped without (and compiled to
// nothing without CUDA). The CPU mpi world bootstraps the NCCL world, as init_distributed does.
#include <gtest/gtest.h>

#if defined(MCORE_WITH_CUDA) && __has_include(<nccl.h>)

#include <cuda_runtime.h>

#include "mcore/comm/cuda/nccl_backend.h"
#include "mcore/comm/distributed.h"
#include "tests/distributed/dist_util.h"

namespace mcore::testing {
namespace {

int visible_gpus() {
  int n = 0;
  return cudaGetDeviceCount(&n) == cudaSuccess ? n : 0;
}

// Device copies: mcore has no CUDA allocator yet, so the tests own their device memory.
Tensor to_cuda(const Tensor& host, int device) {
  Tensor h = host.contiguous();
  void* p = nullptr;
  EXPECT_EQ(cudaSetDevice(device), cudaSuccess);
  EXPECT_EQ(cudaMalloc(&p, std::max<size_t>(h.nbytes(), 1)), cudaSuccess);
  EXPECT_EQ(cudaMemcpy(p, h.data_ptr(), h.nbytes(), cudaMemcpyHostToDevice), cudaSuccess);
  auto storage = std::make_shared<StorageImpl>(
      p, h.nbytes(), Device::cuda(device), [](void* d, void*) { cudaFree(d); }, nullptr);
  return Tensor(storage, h.shape(), h.strides(), 0, h.dtype());
}

Tensor to_host(const Tensor& d) {
  Tensor h = empty(d.shape(), d.dtype());
  EXPECT_EQ(cudaMemcpy(h.data_ptr(), d.data_ptr(), d.nbytes(), cudaMemcpyDeviceToHost),
            cudaSuccess);
  return h;
}

class Nccl : public ::testing::Test {
 protected:
  void SetUp() override {
    if (visible_gpus() < comm::get_world_size())
      GTEST_SKIP() << "needs " << comm::get_world_size() << " GPUs, " << visible_gpus()
                   << " visible";
    static comm::ProcessGroupPtr nccl_world =
        comm::make_nccl_world_group(comm::world(), comm::get_rank() % visible_gpus());
    g = nccl_world;
    rank = g->rank();
    n = g->size();
    dev = comm::get_rank() % visible_gpus();
  }
  comm::ProcessGroupPtr g;
  int rank = 0, n = 1, dev = 0;
};

TEST_F(Nccl, AllReduce) {
  EXPECT_EQ(g->backend_name(), "nccl");
  for (DType d : {DType::F32, DType::BF16, DType::I64}) {
    SCOPED_TRACE(dtype_trace(d));
    Tensor t = to_cuda(dist_tensor({37}, d, rank), dev);
    g->all_reduce(t);
    Tensor expected = formula_tensor({37}, d, [&](int64_t i) {
      double s = 0;
      for (int r = 0; r < n; ++r) s += dist_value(d, r, i);
      return s;
    });
    EXPECT_TENSOR_CLOSE(to_host(t), expected, 0, 0);
    Tensor m = to_cuda(dist_tensor({5}, d, rank), dev);
    g->all_reduce_async(m, comm::ReduceOp::kMax)->wait();
    Tensor expected_max = formula_tensor({5}, d, [&](int64_t i) {
      double v = dist_value(d, 0, i);
      for (int r = 1; r < n; ++r) v = std::max(v, dist_value(d, r, i));
      return v;
    });
    EXPECT_TENSOR_CLOSE(to_host(m), expected_max, 0, 0);
  }
}

TEST_F(Nccl, GatherScatterBroadcast) {
  const DType d = DType::F32;
  Tensor in = to_cuda(dist_tensor({3, 4}, d, rank), dev);
  Tensor out = to_cuda(zeros({3 * n, 4}, d), dev);
  g->all_gather(out, in);
  Tensor host = to_host(out);
  for (int r = 0; r < n; ++r)
    EXPECT_TENSOR_CLOSE(host.narrow(0, 3 * r, 3), dist_tensor({3, 4}, d, r), 0, 0);

  Tensor big = to_cuda(dist_tensor({2 * n, 3}, d, rank, 1), dev);
  Tensor piece = to_cuda(zeros({2, 3}, d), dev);
  g->reduce_scatter(piece, big);
  Tensor expected = formula_tensor({2, 3}, d, [&](int64_t i) {
    double s = 0;
    for (int r = 0; r < n; ++r) s += dist_value(d, r, rank * 6 + i, 1);
    return s;
  });
  EXPECT_TENSOR_CLOSE(to_host(piece), expected, 0, 0);

  Tensor b = to_cuda(dist_tensor({9}, d, rank, 2), dev);
  g->broadcast(b, n - 1);
  EXPECT_TENSOR_CLOSE(to_host(b), dist_tensor({9}, d, n - 1, 2), 0, 0);
  g->barrier();
}

TEST_F(Nccl, UnevenAllToAll) {
  // Rank r sends r + p + 1 rows of 2 to rank p, filled with 100 * r + p.
  const DType d = DType::F32;
  std::vector<int64_t> in_splits, out_splits;
  int64_t in_rows = 0, out_rows = 0;
  for (int p = 0; p < n; ++p) {
    in_splits.push_back(rank + p + 1);
    out_splits.push_back(p + rank + 1);
    in_rows += in_splits.back();
    out_rows += out_splits.back();
  }
  Tensor in_host = empty({in_rows, 2}, DType::F64);
  for (int p = 0, row = 0; p < n; ++p)
    for (int64_t k = 0; k < in_splits[p]; ++k, ++row)
      for (int c = 0; c < 2; ++c) in_host.data<double>()[row * 2 + c] = 100.0 * rank + p;
  Tensor in = to_cuda(in_host.to(d), dev);
  Tensor out = to_cuda(zeros({out_rows, 2}, d), dev);
  g->all_to_all_single(out, in, out_splits, in_splits);
  Tensor expected = empty({out_rows, 2}, DType::F64);
  for (int p = 0, row = 0; p < n; ++p)
    for (int64_t k = 0; k < out_splits[p]; ++k, ++row)
      for (int c = 0; c < 2; ++c) expected.data<double>()[row * 2 + c] = 100.0 * p + rank;
  EXPECT_TENSOR_CLOSE(to_host(out), expected.to(d), 0, 0);
}

TEST_F(Nccl, SendRecvRing) {
  const DType d = DType::F32;
  Tensor send = to_cuda(dist_tensor({17}, d, rank, 3), dev);
  Tensor recv = to_cuda(zeros({17}, d), dev);
  std::vector<comm::P2POp> ops = {{comm::P2POp::kSend, send, (rank + 1) % n},
                                  {comm::P2POp::kRecv, recv, (rank + n - 1) % n}};
  for (auto& w : g->batch_isend_irecv(ops)) w->wait();
  EXPECT_TENSOR_CLOSE(to_host(recv), dist_tensor({17}, d, (rank + n - 1) % n, 3), 0, 0);
}

TEST_F(Nccl, SeveralCommunicatorsFromSplit) {
  auto forward = g->split(0, rank);
  auto reversed = g->split(0, n - rank);  // same members, reversed order
  auto none = g->split(-1, 0);
  ASSERT_TRUE(forward && reversed);
  EXPECT_EQ(none, nullptr);
  EXPECT_EQ(forward->rank(), rank);
  EXPECT_EQ(reversed->rank(), n - 1 - rank);
  EXPECT_EQ(reversed->global_ranks().front(), comm::get_world_size() - 1);
  // Both in flight at once, on their own streams.
  Tensor a = to_cuda(full({8}, rank + 1.0, DType::F32), dev);
  Tensor b = to_cuda(full({8}, 2.0 * (rank + 1), DType::F32), dev);
  auto wa = forward->all_reduce_async(a);
  auto wb = reversed->all_reduce_async(b);
  wb->wait();
  wa->wait();
  const double s = n * (n + 1) / 2.0;
  EXPECT_TENSOR_CLOSE(to_host(a), full({8}, s, DType::F32), 0, 0);
  EXPECT_TENSOR_CLOSE(to_host(b), full({8}, 2 * s, DType::F32), 0, 0);
}

TEST_F(Nccl, RejectsCpuTensors) {
  Tensor t = zeros({4}, DType::F32);
  try {
    g->all_reduce(t);
    FAIL() << "accepted a CPU tensor";
  } catch (const Error& e) {
    EXPECT_NE(e.message().find("needs tensors on cuda:"), std::string::npos) << e.message();
  }
}

}  // namespace
}  // namespace mcore::testing

#else

TEST(Nccl, NotBuilt) {
  GTEST_SKIP() << "this build has no CUDA/NCCL";
}

#endif
