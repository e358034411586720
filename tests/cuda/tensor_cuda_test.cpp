// CUDA tensor runtime: allocator statistics, block reuse and empty_cache, to() and copies across
// devices and layouts, dtype conversions on the device (bit-identical to the CPU rules), fills,
// factories, item(), pinned memory and streams. All tests skip without a GPU.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "mcore/tensor/cuda_memory.h"
#include "mcore/tensor/factory.h"
#include "tests/common/test_util.h"
#include "tests/cuda/cuda_test_util.h"

namespace mcore {
namespace {

using testing::random_tensor;
using testing::to_cpu;
using testing::to_gpu;

const DType kAllDTypes[] = {DType::F64,    DType::F32, DType::BF16, DType::F16, DType::F8E4M3,
                            DType::F8E5M2, DType::I64, DType::I32,  DType::I16, DType::I8,
                            DType::U16,    DType::U8,  DType::BOOL};

// Byte-for-byte equality of two CPU tensors (same dtype and shape).
::testing::AssertionResult same_bits(const Tensor& a, const Tensor& b) {
  if (a.dtype() != b.dtype() || a.shape() != b.shape())
    return ::testing::AssertionFailure() << a.str() << " vs " << b.str();
  Tensor ca = a.contiguous(), cb = b.contiguous();
  const auto* pa = static_cast<const unsigned char*>(ca.data_ptr());
  const auto* pb = static_cast<const unsigned char*>(cb.data_ptr());
  const size_t es = ca.element_size();
  for (int64_t i = 0; i < ca.numel(); ++i) {
    if (std::memcmp(pa + i * es, pb + i * es, es) != 0)
      return ::testing::AssertionFailure() << "element " << i << " differs (" << ca.dtype()
                                           << "): " << ca.reshape({-1}).narrow(0, i, 1).item()
                                           << " vs " << cb.reshape({-1}).narrow(0, i, 1).item();
  }
  return ::testing::AssertionSuccess();
}

// Values that exercise every conversion rule: ties, subnormals of each format, fp8 overflow
// boundaries, and (for float sources) infinities and NaN.
Tensor conversion_inputs(bool specials) {
  std::vector<double> v = {0.0,     -0.0,     1.0,      -1.5,    2.5,
                           3.5,     255,      256,      -129,    65504,
                           65520,   448,      464,      465,     480,
                           57344,   61440,    1e5,      1e-3,    1.0 + 0x1p-8 + 0x1p-30,
                           0x1p-9,  0x1p-10,  0x1p-16,  0x1p-17, 0x1p-24,
                           0x1p-25, 0x1p-126, 0x1p-149, 3e-39,   1e-300,
                           7.25,    -100.75};
  if (specials) {
    v.push_back(std::numeric_limits<double>::infinity());
    v.push_back(-std::numeric_limits<double>::infinity());
    v.push_back(std::numeric_limits<double>::quiet_NaN());
    v.push_back(1e300);
  }
  Tensor r = random_tensor({64}, 7, DType::F64, 300.0);
  std::vector<double> all = v;
  for (int64_t i = 0; i < r.numel(); ++i) all.push_back(r.data<double>()[i]);
  return from_vector(all);
}

TEST(CudaRuntime, DeviceCountNeverThrows) {
#ifdef MCORE_WITH_CUDA
  EXPECT_NO_THROW(cuda::device_count());
  EXPECT_EQ(cuda::is_available(), cuda::device_count() > 0);
#endif
  MCORE_REQUIRE_GPU();
  EXPECT_GE(cuda::current_device(), 0);
  EXPECT_NE(cuda::current_stream(), nullptr);  // the per-device non-blocking default
}

TEST(CudaTensor, RoundTripEveryDType) {
  MCORE_REQUIRE_GPU();
  for (DType d : kAllDTypes) {
    Tensor x = random_tensor({3, 5}, 1, DType::F64, 50.0).to(d);
    Tensor g = to_gpu(x);
    EXPECT_TRUE(g.device().is_cuda());
    EXPECT_EQ(g.dtype(), d);
    EXPECT_TRUE(same_bits(to_cpu(g), x)) << d;
  }
}

TEST(CudaTensor, AllocatorStatsReuseAndEmptyCache) {
  MCORE_REQUIRE_GPU();
  cuda::synchronize();
  cuda_empty_cache();
  reset_peak_cuda_memory_stats();
  const CudaMemoryStats s0 = cuda_memory_stats(0);
  {
    Tensor t = empty({1000}, {DType::F32, Device::cuda()});  // 4000 B -> one 4096 B block
    const CudaMemoryStats s1 = cuda_memory_stats(0);
    EXPECT_EQ(s1.allocated_bytes - s0.allocated_bytes, 4096);
    EXPECT_EQ(s1.requested_bytes - s0.requested_bytes, 4000);
    EXPECT_GE(s1.reserved_bytes, s1.allocated_bytes);
    EXPECT_GE(s1.peak_allocated_bytes, s1.allocated_bytes);
    Tensor u = empty({10}, {DType::F32, Device::cuda()});  // split from a cached small segment
    EXPECT_EQ(cuda_memory_stats(0).num_cuda_mallocs, s1.num_cuda_mallocs);
    Tensor big = empty({24 << 20}, {DType::U8, Device::cuda()});  // its own 24 MiB segment
    EXPECT_GE(cuda_memory_stats(0).reserved_bytes - s1.reserved_bytes, 24 << 20);
  }
  const CudaMemoryStats s2 = cuda_memory_stats(0);
  EXPECT_EQ(s2.allocated_bytes, s0.allocated_bytes);
  EXPECT_EQ(s2.requested_bytes, s0.requested_bytes);
  EXPECT_GE(s2.peak_allocated_bytes, s0.allocated_bytes + 4096 + (24 << 20));
  EXPECT_GE(s2.reserved_bytes, s0.reserved_bytes + (24 << 20));  // cached, not freed
  {
    // The same requests again come from the cache.
    Tensor t = empty({1000}, {DType::F32, Device::cuda()});
    Tensor big = empty({24 << 20}, {DType::U8, Device::cuda()});
    EXPECT_EQ(cuda_memory_stats(0).num_cuda_mallocs, s2.num_cuda_mallocs);
  }
  reset_peak_cuda_memory_stats(0);
  EXPECT_EQ(cuda_memory_stats(0).peak_allocated_bytes, cuda_memory_stats(0).allocated_bytes);
  cuda_empty_cache();
  const CudaMemoryStats s3 = cuda_memory_stats(0);
  EXPECT_LE(s3.reserved_bytes, s2.reserved_bytes - (24 << 20));
  EXPECT_GT(s3.num_cuda_frees, s2.num_cuda_frees);
}

TEST(CudaTensor, LargeAllocationsUseLargeSegments) {
  MCORE_REQUIRE_GPU();
  const CudaMemoryStats s0 = cuda_memory_stats(0);
  Tensor a = empty({3 << 20}, {DType::U8, Device::cuda()});   // 3 MiB: a 20 MiB segment
  Tensor b = empty({24 << 20}, {DType::U8, Device::cuda()});  // 24 MiB: its own segment
  const CudaMemoryStats s1 = cuda_memory_stats(0);
  EXPECT_GE(s1.reserved_bytes - s0.reserved_bytes, 0);
  EXPECT_EQ(s1.allocated_bytes - s0.allocated_bytes, (3 << 20) + (24 << 20));
  a.fill_(3);
  EXPECT_EQ(to_cpu(a).narrow(0, (3 << 20) - 1, 1).item(), 3.0);
}

TEST(CudaTensor, OutOfMemoryNamesSizeAndFreeMemory) {
  MCORE_REQUIRE_GPU();
  try {
    Tensor t = empty({int64_t{1} << 50}, {DType::U8, Device::cuda()});
    FAIL() << "allocating 1 PiB succeeded";
  } catch (const Error& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("out of memory"), std::string::npos) << m;
    EXPECT_NE(m.find("1125899906842624 bytes"), std::string::npos) << m;
    EXPECT_NE(m.find("free"), std::string::npos) << m;
  }
  EXPECT_GE(cuda_memory_stats(0).num_ooms, 1);
}

// Inputs for a src -> dst conversion: the special values between float types; otherwise
// non-negative values every integer type holds (float -> integer overflow is undefined in C++).
Tensor conversion_inputs_for(DType src, DType dst) {
  if (is_floating(src) && is_floating(dst)) return conversion_inputs(true).to(src, true);
  Tensor r = random_tensor({97}, 11, DType::F64, 100.0);
  std::vector<double> v;
  for (int64_t i = 0; i < r.numel(); ++i) {
    double a = std::fabs(r.data<double>()[i]);
    v.push_back(is_floating(src) ? a : std::floor(a));
  }
  return from_vector(v).to(src);
}

TEST(CudaTensor, ConversionsMatchCpuBitForBit) {
  MCORE_REQUIRE_GPU();
  for (DType src : kAllDTypes) {
    for (DType dst : kAllDTypes) {
      Tensor x = conversion_inputs_for(src, dst);
      for (bool sat : {false, true}) {
        Tensor expected = x.to(dst, sat);
        Tensor actual = to_cpu(to_gpu(x).to(dst, sat));
        EXPECT_TRUE(same_bits(actual, expected)) << src << " -> " << dst << " saturate=" << sat;
      }
    }
  }
}

TEST(CudaTensor, CrossDeviceCopiesConvert) {
  MCORE_REQUIRE_GPU();
  Tensor x = conversion_inputs(true).to(DType::F32);
  // host f32 -> device bf16 (converted on the device), device bf16 -> host f64.
  Tensor g = empty(x.shape(), {DType::BF16, Device::cuda()});
  g.copy_(x);
  EXPECT_TRUE(same_bits(to_cpu(g), x.to(DType::BF16)));
  Tensor h = empty(x.shape(), DType::F64);
  h.copy_(g);
  EXPECT_TRUE(same_bits(h, x.to(DType::BF16).to(DType::F64)));
}

TEST(CudaTensor, StridedCopiesAndViews) {
  MCORE_REQUIRE_GPU();
  Tensor x = random_tensor({4, 6, 5}, 3, DType::F32);
  Tensor g = to_gpu(x);
  NoGradGuard no_grad;
  // contiguous() / clone() of permuted and narrowed views run the strided kernel.
  EXPECT_TRUE(
      same_bits(to_cpu(g.permute({2, 0, 1}).contiguous()), x.permute({2, 0, 1}).contiguous()));
  EXPECT_TRUE(same_bits(to_cpu(g.narrow(1, 1, 4).clone()), x.narrow(1, 1, 4).clone()));
  // to(Device) of a non-contiguous view; to(dtype) of a strided view on the device.
  EXPECT_TRUE(same_bits(to_cpu(g.transpose(0, 2)), x.transpose(0, 2).contiguous()));
  EXPECT_TRUE(
      same_bits(to_cpu(g.transpose(0, 1).to(DType::F16)), x.transpose(0, 1).to(DType::F16)));
  // copy_ into a strided device view from a host tensor, and a broadcast copy_.
  Tensor dst = zeros({6, 4}, {DType::F32, Device::cuda()});
  Tensor view = dst.transpose(0, 1);  // [4, 6], strided
  view.copy_(x.select(2, 0));
  EXPECT_TRUE(same_bits(to_cpu(dst), x.select(2, 0).transpose(0, 1).contiguous()));
  Tensor row = to_gpu(random_tensor({6}, 4, DType::F32));
  Tensor b = empty({3, 6}, {DType::F32, Device::cuda()});
  b.copy_(row);
  EXPECT_TRUE(same_bits(to_cpu(b), to_cpu(row).expand({3, 6}).contiguous()));
  // device -> strided host view.
  Tensor host = zeros({6, 4}, DType::F32);
  Tensor hv = host.transpose(0, 1);
  hv.copy_(g.select(2, 1));
  EXPECT_TRUE(same_bits(host, x.select(2, 1).transpose(0, 1).contiguous()));
}

TEST(CudaTensor, FillsAndFactories) {
  MCORE_REQUIRE_GPU();
  const Device gpu = Device::cuda();
  for (DType d : kAllDTypes) {
    EXPECT_TRUE(same_bits(to_cpu(zeros({7, 3}, {d, gpu})), zeros({7, 3}, d))) << d;
    EXPECT_TRUE(same_bits(to_cpu(ones({7, 3}, {d, gpu})), ones({7, 3}, d))) << d;
    EXPECT_TRUE(same_bits(to_cpu(full({5}, 2.75, {d, gpu})), full({5}, 2.75, d))) << d;
  }
  EXPECT_TRUE(same_bits(to_cpu(arange(3, 40, 3, {DType::I64, gpu})), arange(3, 40, 3)));
  // fill_ of a strided view leaves the rest alone.
  Tensor t = zeros({4, 5}, {DType::BF16, gpu});
  {
    NoGradGuard no_grad;
    Tensor col = t.narrow(1, 2, 2);
    col.fill_(-1.5);
  }
  Tensor expect = zeros({4, 5}, DType::BF16);
  {
    NoGradGuard no_grad;
    Tensor col = expect.narrow(1, 2, 2);
    col.fill_(-1.5);
  }
  EXPECT_TRUE(same_bits(to_cpu(t), expect));
  // Random factories draw the CPU's Philox numbers.
  RandomSpec spec{123, 4};
  EXPECT_TRUE(same_bits(to_cpu(randn({33, 7}, spec, {DType::F32, gpu})), randn({33, 7}, spec)));
  EXPECT_TRUE(same_bits(to_cpu(rand({9}, spec, {DType::BF16, gpu})), rand({9}, spec, DType::BF16)));
  EXPECT_EQ(full({}, 6.5, {DType::F32, gpu}).item(), 6.5);
  EXPECT_EQ(to_gpu(from_vector<int64_t>({42})).item<int64_t>(), 42);
}

TEST(CudaTensor, PinnedMemory) {
  MCORE_REQUIRE_GPU();
  Tensor x = random_tensor({257, 3}, 9, DType::F32);
  Tensor p = pin_memory(x);
  EXPECT_TRUE(is_pinned(p));
  EXPECT_FALSE(is_pinned(x));
  EXPECT_TRUE(p.device().is_cpu());
  EXPECT_TRUE(same_bits(p, x));
  Tensor g = to_gpu(p);  // asynchronous on the current stream
  EXPECT_TRUE(same_bits(to_cpu(g), x));
  void* first = p.data_ptr();
  p = Tensor();
  cuda::synchronize();
  Tensor q = pin_memory(x);  // the block comes back once its copy finished
  EXPECT_EQ(q.data_ptr(), first);
}

TEST(CudaTensor, RecordStreamDelaysReuse) {
  MCORE_REQUIRE_GPU();
  cudaStream_t side = nullptr;
  ASSERT_EQ(cudaStreamCreateWithFlags(&side, cudaStreamNonBlocking), cudaSuccess);
  Tensor t = empty({1 << 20}, {DType::F32, Device::cuda()});
  record_stream(t, side);
  const CudaMemoryStats before = cuda_memory_stats(0);
  t = Tensor();  // pending until `side` passes its event
  ASSERT_EQ(cudaStreamSynchronize(side), cudaSuccess);
  Tensor u = empty({1 << 20}, {DType::F32, Device::cuda()});  // processes the pending free
  const CudaMemoryStats after = cuda_memory_stats(0);
  EXPECT_EQ(after.num_cuda_mallocs, before.num_cuda_mallocs);  // the recorded block, reused
  EXPECT_EQ(after.allocated_bytes, before.allocated_bytes);
  EXPECT_THROW(record_stream(zeros({2}), side), Error);  // CPU tensor
  u = Tensor();
  cudaStreamDestroy(side);
}

TEST(CudaTensor, UserStream) {
  MCORE_REQUIRE_GPU();
  cudaStream_t s = nullptr;
  ASSERT_EQ(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), cudaSuccess);
  cudaStream_t prev = cuda::current_stream();
  cuda::set_current_stream(s);
  EXPECT_EQ(cuda::current_stream(), s);
  Tensor x = random_tensor({100}, 2, DType::F32);
  EXPECT_TRUE(same_bits(to_cpu(to_gpu(x).to(DType::F64)), x.to(DType::F64)));
  cuda::set_current_stream(prev);
  cuda::synchronize();
  cudaStreamSynchronize(s);
  cudaStreamDestroy(s);
}

}  // namespace
}  // namespace mcore
