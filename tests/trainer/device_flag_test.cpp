// pretrain_gpt --device: cuda without a GPU (or in a build without CUDA) is an error that says
// why before anything is built; cpu is the default. The GPU runs themselves are in
// tests/cuda/pretrain_gpt_cuda_test.cpp.
#include <gtest/gtest.h>

#include "mcore/tensor/cuda_device.h"
#include "tests/trainer/trainer_test_util.h"

namespace mcore::training::trainer_test {
namespace {

const char* kTiny =
    " --model gpt2-tiny --seq-length 32 --max-position-embeddings 64 --mock-data"
    " --micro-batch-size 2 --global-batch-size 2 --train-iters 1 --lr 1e-3";

TEST(PretrainGPTDevice, CudaWithoutAGpuIsAClearError) {
  if (cuda_device_count() > 0) GTEST_SKIP() << "a GPU is visible: the cuda run is a gpu test";
  RunResult r = run(tool("pretrain_gpt") + kTiny + " --device cuda");
  EXPECT_NE(r.rc, 0) << r.output;
  EXPECT_NE(r.output.find("--device cuda"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find(cuda_built() ? "no CUDA device is visible" : "built without CUDA"),
            std::string::npos)
      << r.output;
}

TEST(PretrainGPTDevice, UnknownDeviceIsRejected) {
  RunResult r = run(tool("pretrain_gpt") + kTiny + " --device tpu");
  EXPECT_NE(r.rc, 0) << r.output;
  EXPECT_NE(r.output.find("tpu"), std::string::npos) << r.output;
}

TEST(PretrainGPTDevice, ExplicitCpuRuns) {
  RunResult r = run(tool("pretrain_gpt") + kTiny + " --device cpu");
  EXPECT_EQ(r.rc, 0) << r.output;
}

}  // namespace
}  // namespace mcore::training::trainer_test
