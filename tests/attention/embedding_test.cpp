// Embedding lookup and its deterministic scatter-add gradient (mcore/ops/embedding.h): against
// torch.nn.functional.embedding, float64 gradient check, int32 ids, and bad ids.
#include <gtest/gtest.h>

#include <cmath>

#include "mcore/nn/functional/embedding.h"
#include "mcore/ops/elementwise.h"
#include "mcore/ops/embedding.h"
#include "mcore/tensor/factory.h"
#include "tests/attention/attention_util.h"
#include "tests/common/gradcheck.h"
#include "tests/common/test_util.h"

namespace mcore {
namespace {

using testing::expect_error_naming;
using testing::gradcheck;
using testing::leaf;
using testing::load_ref;
using testing::random_tensor;

constexpr const char* kGroup = "attention";

// The forward is a row copy (exact: tolerance 0). The weight gradient sums at most a handful of
// float32 rows per id, in token order like PyTorch's CPU kernel: rtol 1e-6, atol 1e-7.
TEST(Embedding, ReferenceF32) {
  Tensor w = leaf(load_ref(kGroup, "emb_w"));
  Tensor ids = load_ref(kGroup, "emb_ids");
  Tensor y = F::embedding(ids, w);
  EXPECT_EQ(y.shape(), (Shape{3, 4, 6}));
  EXPECT_TENSOR_CLOSE(y, load_ref(kGroup, "emb_y"), 0, 0);
  y.backward(load_ref(kGroup, "emb_dy"));
  EXPECT_TENSOR_CLOSE(w.grad(), load_ref(kGroup, "emb_dw"), 1e-6, 1e-7);
}

// bf16: lookup exact; the gradient rows are summed in float32 and rounded once (2^-9
// relative), so rtol 1e-2 against the float32 reference of the same bf16 inputs.
TEST(Embedding, ReferenceBf16) {
  Tensor w = leaf(load_ref(kGroup, "emb_w").to(DType::BF16));
  Tensor ids = load_ref(kGroup, "emb_ids");
  Tensor y = F::embedding(ids, w);
  EXPECT_TENSOR_CLOSE(y, load_ref(kGroup, "emb_y").to(DType::BF16), 0, 0);
  Tensor dy = load_ref(kGroup, "emb_dy").to(DType::BF16);
  y.backward(dy);
  Tensor expect = ops::embedding_backward(dy.to(DType::F32), ids, 11);
  EXPECT_EQ(w.grad().dtype(), DType::BF16);
  EXPECT_TENSOR_CLOSE(w.grad(), expect, 1e-2, 1e-3);
}

TEST(Embedding, Gradcheck) {
  Tensor w = leaf(random_tensor({7, 5}, 1));
  Tensor ids = from_vector<int64_t>({3, 0, 3, 6, 3, 1}, {2, 3});  // id 3 three times
  auto fn = [&](const std::vector<Tensor>& in) { return F::embedding(ids, in[0]); };
  EXPECT_TRUE(gradcheck(fn, {w}));
}

TEST(Embedding, Int32IdsAndDeterminism) {
  Tensor w = random_tensor({50, 33}, 2, DType::F32);
  std::vector<int64_t> v(1000);
  for (size_t i = 0; i < v.size(); ++i) v[i] = static_cast<int64_t>((i * 37) % 50 % 7);
  Tensor ids = from_vector<int64_t>(v, {10, 100});
  EXPECT_TENSOR_CLOSE(ops::embedding_forward(w, ids), ops::embedding_forward(w, ids.to(DType::I32)),
                      0, 0);
  Tensor dy = random_tensor({10, 100, 33}, 3, DType::F32);
  Tensor g1 = ops::embedding_backward(dy, ids, 50);
  Tensor g2 = ops::embedding_backward(dy, ids.to(DType::I32), 50);
  EXPECT_TENSOR_CLOSE(g1, g2, 0, 0);  // bitwise: fixed summation order, no atomics
  // Rows never looked up get exact zeros.
  EXPECT_EQ(to_vector<float>(g1.select(0, 49)), std::vector<float>(33, 0.0f));
}

// Untouched rows are zeroed with streaming stores over their whole 64-byte lines and plain
// stores at the ragged ends. Row widths that leave those ends unaligned (H = 100 floats: rows
// start 16 bytes apart from the line grid in turn; 37: odd; bf16 rows of 2-byte elements), over a
// block the allocator's cache hands back full of NaNs, and checked against a naive sum.
TEST(Embedding, BackwardZeroesUntouchedRowsOfReusedMemory) {
  for (DType dt : {DType::F32, DType::BF16}) {
    for (int64_t h : {100, 37, 48}) {
      const int64_t V = 2048;
      // Put NaNs in a block of the exact size the gradient will ask for, then free it: the CPU
      // allocator caches blocks of 128 KB and more by size and hands this one back.
      const void* dirty = nullptr;
      {
        Tensor nan = full({V, h}, std::nan(""), {dt});
        dirty = nan.data_ptr();
      }
      std::vector<int64_t> v = {5, 299, 5, 17, 0, 150, 17, 5};
      Tensor ids = from_vector<int64_t>(v, {2, 4});
      Tensor dy = random_tensor({2, 4, h}, 21, DType::F32, 1.0).to(dt);
      Tensor g_dt = ops::embedding_backward(dy, ids, V);
      EXPECT_EQ(g_dt.data_ptr(), dirty) << "the test meant to get the NaN-filled block back";
      Tensor g = g_dt.to(DType::F32);
      const std::vector<float> got = to_vector<float>(g);
      const std::vector<float> dyv = to_vector<float>(dy.to(DType::F32));
      std::vector<float> want(static_cast<size_t>(V * h), 0.0f);
      for (size_t t = 0; t < v.size(); ++t)
        for (int64_t e = 0; e < h; ++e) want[v[t] * h + e] += dyv[t * h + e];
      Tensor w = from_vector<float>(want, {V, h});
      EXPECT_TENSOR_CLOSE(g, dt == DType::F32 ? w : w.to(DType::BF16).to(DType::F32), 0, 0)
          << dt << " H=" << h;
    }
  }
}

TEST(Embedding, BadIdsNameIdAndV) {
  Tensor w = zeros({11, 4});
  expect_error_naming(
      [&] {
        ops::embedding_forward(w, from_vector<int64_t>({1, 11}));
      },
      {"id 11", "V = 11", "[11, 4]"});
  expect_error_naming([&] { ops::embedding_forward(w, from_vector<int32_t>({-1})); },
                      {"id -1", "V = 11"});
  expect_error_naming([&] { ops::embedding_forward(w, zeros({3})); }, {"float32", "[3]"});
  expect_error_naming([&] { ops::embedding_forward(zeros({11}), from_vector<int64_t>({1})); },
                      {"[11]"});
  expect_error_naming(
      [&] {
        ops::embedding_backward(zeros({2, 4}), from_vector<int64_t>({1, 2, 3}), 11);
      },
      {"[2, 4]", "[3]"});
  expect_error_naming(
      [&] {
        ops::embedding_backward(zeros({1, 4}), from_vector<int64_t>({20}), 11);
      },
      {"id 20", "V = 11"});
}

// The in-place form (a tied weight's gradient already holds the output layer's part): equal,
// bit for bit, to adding the dense gradient, in float32 and bf16, with repeated ids; rows of
// ids that do not occur are left untouched.
TEST(Embedding, BackwardAddIntoExistingGradient) {
  for (DType dt : {DType::F32, DType::BF16}) {
    Tensor ids = from_vector<int64_t>({3, 7, 3, 0, 9, 3, 7, 1}).view({2, 4});
    Tensor dy = random_tensor({2, 4, 5}, 11, DType::F32, 1.0).to(dt);
    Tensor base = random_tensor({12, 5}, 12, DType::F32, 1.0).to(dt);
    Tensor expect = ops::add(base, ops::embedding_backward(dy, ids, 12));
    Tensor got = base.clone();
    ops::embedding_backward_add_(got, dy, ids);
    EXPECT_TENSOR_CLOSE(got, expect, 0, 0);
    EXPECT_TENSOR_CLOSE(got.narrow(0, 10, 2), base.narrow(0, 10, 2), 0, 0);
  }
  Tensor g = zeros({4, 5});
  expect_error_naming(
      [&] {
        ops::embedding_backward_add_(g, zeros({2, 6}), from_vector<int64_t>({1, 2}));
      },
      {"embedding_backward_add_", "[4, 5]", "[2, 6]"});
}

}  // namespace
}  // namespace mcore
