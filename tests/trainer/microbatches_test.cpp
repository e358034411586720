// MicrobatchCalculator against Megatron's RampupBatchsizeNumMicroBatchesCalculator arithmetic
// (hand-computed values) and update_train_iters.
#include <gtest/gtest.h>

#include "mcore/base/error.h"
#include "mcore/training/microbatches.h"

namespace mcore::training {
namespace {

TEST(MicrobatchCalculator, ConstantGlobalBatch) {
  MicrobatchCalculator c(32, 2, 4);
  EXPECT_EQ(c.num_microbatches(), 4);
  c.update(1000);
  EXPECT_EQ(c.num_microbatches(), 4);
  EXPECT_EQ(c.current_global_batch_size(), 32);
  EXPECT_EQ(c.train_iters_for_samples(320), 10);
}

TEST(MicrobatchCalculator, RampupFollowsMegatron) {
  // --rampup-batch-size 8 8 96, global 32, mbs 2, dp 2: increments of 8 every 96/3 = 32
  // samples.
  MicrobatchCalculator c(32, 2, 2, {8, 8, 96});
  EXPECT_EQ(c.current_global_batch_size(), 8);
  EXPECT_EQ(c.num_microbatches(), 2);
  c.update(31);
  EXPECT_EQ(c.current_global_batch_size(), 8);
  c.update(32);
  EXPECT_EQ(c.current_global_batch_size(), 16);
  c.update(64);
  EXPECT_EQ(c.current_global_batch_size(), 24);
  c.update(96);
  EXPECT_EQ(c.current_global_batch_size(), 32);
  c.update(97);
  EXPECT_EQ(c.current_global_batch_size(), 32);
  EXPECT_EQ(c.num_microbatches(), 8);
  // update_train_iters: consumed 0,8,16,24 (bs 8), 32,48 (16), 64,88 (24), 112 > 96 stops
  // after 8 iterations at 112 consumed; then (400 - 112) / 32 = 9 more.
  EXPECT_EQ(c.train_iters_for_samples(400), 17);
}

TEST(MicrobatchCalculator, BadSizesAreErrors) {
  EXPECT_THROW(MicrobatchCalculator(30, 4, 2), Error);
  EXPECT_THROW(MicrobatchCalculator(32, 2, 2, {8, 5, 96}), Error);
}

}  // namespace
}  // namespace mcore::training
