// CUDA AdamW and SGD steps (mcore/ops/cuda/{adam,sgd}_cuda.cu) against the CPU kernels over
// several steps: plain float32, float64, bf16 gradients, and the mixed-precision form with an
// fp32 main copy writing a bf16/fp16 model parameter. Sizes are odd so that the vectorized body
// and the scalar tail both run, and one case starts misaligned (a view at offset 1) to take the
// scalar fallback. All tests skip without a GPU.
//
// Tolerance 0 (bit-identical): the GPU evaluates the same expression with the same IEEE roundings
// in the same order (explicit __fmul_rn/__fadd_rn/__fdiv_rn/__fsqrt_rn and the one fused
// multiply-add PyTorch uses), and the per-step scalars are computed by the same host code.
#include <gtest/gtest.h>

#include <cmath>

#include "mcore/ops/adam.h"
#include "mcore/ops/sgd.h"
#include "mcore/tensor/factory.h"
#include "tests/common/test_util.h"
#include "tests/cuda/cuda_test_util.h"

namespace mcore {
namespace {

using testing::random_tensor;
using testing::to_cpu;
using testing::to_gpu;

struct AdamState {
  Tensor p, m, v;
};

AdamState adam_state(int64_t n, DType dt, uint64_t seed) {
  Tensor v = random_tensor({n}, seed + 2, DType::F64, 0.01);
  for (int64_t i = 0; i < n; ++i) v.data<double>()[i] = std::abs(v.data<double>()[i]);
  // exp_avg_sq is non-negative.
  return {random_tensor({n}, seed, dt), random_tensor({n}, seed + 1, dt, 0.1), v.to(dt)};
}

void expect_same(const Tensor& gpu, const Tensor& cpu) {
  EXPECT_TENSOR_CLOSE(to_cpu(gpu), cpu, 0, 0);
}

TEST(CudaAdam, MatchesCpuBitForBit) {
  MCORE_REQUIRE_GPU();
  ops::AdamConfig c;
  c.lr = 3e-3;
  c.weight_decay = 0.1;
  for (DType dt : {DType::F32, DType::F64}) {
    for (DType gdt : {dt, DType::BF16}) {
      SCOPED_TRACE(std::string(dtype_name(dt)) + " grad " + dtype_name(gdt));
      const int64_t n = 10007;
      AdamState cpu = adam_state(n, dt, 5);
      AdamState gpu{to_gpu(cpu.p), to_gpu(cpu.m), to_gpu(cpu.v)};
      for (int64_t step = 1; step <= 3; ++step) {
        const Tensor g = random_tensor({n}, 100 + step, gdt);
        ops::adam_step_(cpu.p, g, cpu.m, cpu.v, step, c);
        ops::adam_step_(gpu.p, to_gpu(g), gpu.m, gpu.v, step, c);
      }
      expect_same(gpu.p, cpu.p);
      expect_same(gpu.m, cpu.m);
      expect_same(gpu.v, cpu.v);
    }
  }
}

TEST(CudaAdam, MainParamsWriteModelCopy) {
  MCORE_REQUIRE_GPU();
  ops::AdamConfig c;
  c.lr = 1e-2;
  c.bias_correction = false;
  for (DType mdt : {DType::BF16, DType::F16}) {
    SCOPED_TRACE(dtype_name(mdt));
    const int64_t n = 4099;
    AdamState cpu = adam_state(n, DType::F32, 9);
    Tensor model = cpu.p.to(mdt);
    AdamState gpu{to_gpu(cpu.p), to_gpu(cpu.m), to_gpu(cpu.v)};
    Tensor model_g = to_gpu(model);
    for (int64_t step = 1; step <= 2; ++step) {
      const Tensor g = random_tensor({n}, 200 + step, mdt);
      ops::adam_step_with_main_(model, cpu.p, g, cpu.m, cpu.v, step, c);
      ops::adam_step_with_main_(model_g, gpu.p, to_gpu(g), gpu.m, gpu.v, step, c);
    }
    expect_same(gpu.p, cpu.p);
    expect_same(gpu.v, cpu.v);
    expect_same(model_g, model);
  }
}

// A view starting one element in: not 16-byte aligned, so the scalar path runs.
TEST(CudaAdam, MisalignedViewsUseScalarPath) {
  MCORE_REQUIRE_GPU();
  const int64_t n = 1001;
  AdamState cpu = adam_state(n + 1, DType::F32, 21);
  AdamState gpu{to_gpu(cpu.p), to_gpu(cpu.m), to_gpu(cpu.v)};
  const Tensor g = random_tensor({n}, 22, DType::F32);
  Tensor pc = cpu.p.narrow(0, 1, n), mc = cpu.m.narrow(0, 1, n), vc = cpu.v.narrow(0, 1, n);
  Tensor pg = gpu.p.narrow(0, 1, n), mg = gpu.m.narrow(0, 1, n), vg = gpu.v.narrow(0, 1, n);
  ops::adam_step_(pc, g, mc, vc, 1, {});
  ops::adam_step_(pg, to_gpu(g), mg, vg, 1, {});
  expect_same(gpu.p, cpu.p);  // element 0 untouched on both
  expect_same(gpu.v, cpu.v);
}

TEST(CudaAdam, DeviceMismatchNamesDevices) {
  MCORE_REQUIRE_GPU();
  Tensor p = to_gpu(random_tensor({8}, 1, DType::F32));
  Tensor m = to_gpu(zeros({8})), v = to_gpu(zeros({8}));
  const Tensor g_cpu = random_tensor({8}, 2, DType::F32);
  try {
    ops::adam_step_(p, g_cpu, m, v, 1, {});
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("cuda:0"), std::string::npos) << e.what();
  }
}

TEST(CudaSgd, MatchesCpuBitForBit) {
  MCORE_REQUIRE_GPU();
  struct Cfg {
    double momentum, dampening, wd;
    bool nesterov;
  };
  for (const Cfg& k :
       {Cfg{0.0, 0.0, 0.0, false}, Cfg{0.9, 0.1, 1e-2, false}, Cfg{0.9, 0.0, 1e-2, true}}) {
    for (DType gdt : {DType::F32, DType::BF16}) {
      SCOPED_TRACE("momentum " + std::to_string(k.momentum) + " nesterov " +
                   std::to_string(k.nesterov) + " grad " + dtype_name(gdt));
      ops::SgdConfig c;
      c.lr = 0.05;
      c.momentum = k.momentum;
      c.dampening = k.dampening;
      c.weight_decay = k.wd;
      c.nesterov = k.nesterov;
      const int64_t n = 7777;
      Tensor p = random_tensor({n}, 31, DType::F32);
      Tensor buf = zeros({n});
      Tensor pg = to_gpu(p), bufg = to_gpu(buf);
      for (int step = 0; step < 3; ++step) {
        const Tensor g = random_tensor({n}, 40 + step, gdt);
        ops::sgd_step_(p, g, buf, step == 0, c);
        ops::sgd_step_(pg, to_gpu(g), bufg, step == 0, c);
      }
      expect_same(pg, p);
      if (k.momentum != 0.0) expect_same(bufg, buf);
    }
  }
}

TEST(CudaSgd, MainParamsWriteModelCopy) {
  MCORE_REQUIRE_GPU();
  ops::SgdConfig c;
  c.lr = 0.1;
  c.momentum = 0.8;
  const int64_t n = 3001;
  Tensor main = random_tensor({n}, 51, DType::F32);
  Tensor model = main.to(DType::BF16), buf = zeros({n});
  Tensor main_g = to_gpu(main), model_g = to_gpu(model), buf_g = to_gpu(buf);
  for (int step = 0; step < 2; ++step) {
    const Tensor g = random_tensor({n}, 60 + step, DType::BF16);
    ops::sgd_step_with_main_(model, main, g, buf, step == 0, c);
    ops::sgd_step_with_main_(model_g, main_g, to_gpu(g), buf_g, step == 0, c);
  }
  expect_same(main_g, main);
  expect_same(model_g, model);
  expect_same(buf_g, buf);
}

}  // namespace
}  // namespace mcore
