#include <gtest/gtest.h>

#include "mcore/tensor/factory.h"
#include "mcore/tensor/npy.h"
#include "mcore/tensor/tensor.h"
#include "tests/common/test_util.h"

namespace mcore {

TEST(Tensor, FactoriesAndMetadata) {
  Tensor t = zeros({2, 3, 4});
  EXPECT_EQ(t.dim(), 3);
  EXPECT_EQ(t.numel(), 24);
  EXPECT_EQ(t.strides(), (Shape{12, 4, 1}));
  EXPECT_TRUE(t.is_contiguous());
  EXPECT_EQ(reinterpret_cast<uintptr_t>(t.data_ptr()) % 64, 0u);
  EXPECT_EQ(to_vector<int64_t>(arange(5)), (std::vector<int64_t>{0, 1, 2, 3, 4}));
  EXPECT_EQ(to_vector<float>(full({2}, 2.5)), (std::vector<float>{2.5f, 2.5f}));
}

TEST(Tensor, ViewsShareStorage) {
  Tensor t = arange(0, 24, 1, DType::F32).view({2, 3, 4});
  Tensor n = t.narrow(2, 1, 2);
  EXPECT_EQ(n.shape(), (Shape{2, 3, 2}));
  EXPECT_FALSE(n.is_contiguous());
  EXPECT_EQ(to_vector<float>(n), (std::vector<float>{1, 2, 5, 6, 9, 10, 13, 14, 17, 18, 21, 22}));
  Tensor tr = t.transpose(0, 2);
  EXPECT_EQ(tr.shape(), (Shape{4, 3, 2}));
  EXPECT_EQ(tr.contiguous().data<float>()[1], 12.0f);
  n.fill_(-1);
  EXPECT_EQ(t.data<float>()[1], -1.0f);
  EXPECT_EQ(t.reshape({6, 4}).shape(), (Shape{6, 4}));
  EXPECT_EQ(t.view({-1, 4}).shape(), (Shape{6, 4}));
  EXPECT_EQ(tr.reshape({24}).numel(), 24);
  Tensor s = t.select(1, 2);
  EXPECT_EQ(s.shape(), (Shape{2, 4}));
  EXPECT_EQ(to_vector<float>(s)[0], 8.0f);
}

TEST(Tensor, ViewErrorsNameShapes) {
  Tensor t = zeros({2, 3});
  try {
    t.view({4, 2});
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(e.message().find("[4, 2]"), std::string::npos) << e.message();
    EXPECT_NE(e.message().find("[2, 3]"), std::string::npos) << e.message();
  }
  EXPECT_THROW(t.transpose(0, 1).view({6}), Error);
  EXPECT_THROW(t.narrow(1, 2, 2), Error);
}

TEST(Tensor, DtypeConversionRoundTrip) {
  Tensor t = from_vector<float>({1.0f, 1.00390625f, 3.14159f, -65504.0f, 1e-8f});
  Tensor b = t.to(DType::BF16).to(DType::F32);
  std::vector<float> v = to_vector<float>(b);
  EXPECT_EQ(v[0], 1.0f);
  EXPECT_EQ(v[1], 1.0f);  // tie rounds to even
  EXPECT_EQ(v[2], 3.140625f);
  Tensor h = t.to(DType::F16).to(DType::F32);
  EXPECT_EQ(to_vector<float>(h)[3], -65504.0f);
}

TEST(Tensor, NpyRoundTrip) {
  Tensor t = arange(0, 12, 1, DType::F64).view({3, 4});
  std::string path = ::testing::TempDir() + "/t.npy";
  save_npy(path, t);
  Tensor r = load_npy(path);
  EXPECT_EQ(r.shape(), t.shape());
  EXPECT_EQ(r.dtype(), DType::F64);
  EXPECT_EQ(to_vector<double>(r), to_vector<double>(t));
}

}  // namespace mcore
