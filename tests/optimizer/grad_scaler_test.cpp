// Loss scalers against megatron-core's DynamicGradScaler (tests/reference/gen_optimizer.py):
// the same overflow sequence (runs of clean and overflowing steps) gives the same scale,
// growth tracker, hysteresis tracker and inverse scale after every update, exactly (the scale
// is float32 arithmetic on powers of two in both). Plus the semantics spelled out on a small
// hand-made sequence, state round trips and bad arguments.
#include <gtest/gtest.h>

#include "mcore/optimizer/grad_scaler.h"
#include "tests/common/test_util.h"

namespace mcore::testing {
namespace {

using namespace mcore::optimizer;

TEST(GradScaler, DynamicMatchesMegatronTrace) {
  const Tensor flags = load_ref("optimizer", "scaler_flags");
  for (const char* tag : {"a", "b"}) {
    SCOPED_TRACE(tag);
    const Tensor config = load_ref("optimizer", std::string("scaler_") + tag + "_config");
    const double* c = config.data<double>();
    const Tensor trace = load_ref("optimizer", std::string("scaler_") + tag + "_trace");
    DynamicGradScaler s(c[0], c[1], 2.0, 0.5, static_cast<int64_t>(c[2]),
                        static_cast<int64_t>(c[3]));
    bool hit_floor = false, grew = false;
    float prev = s.scale();
    for (int64_t i = 0; i < flags.numel(); ++i) {
      s.update(flags.data<double>()[i] != 0.0);
      const double* row = trace.data<double>() + i * 4;
      ASSERT_EQ(s.scale(), row[0]) << "update " << i;
      ASSERT_EQ(s.growth_tracker(), row[1]) << "update " << i;
      ASSERT_EQ(s.hysteresis_tracker(), row[2]) << "update " << i;
      ASSERT_EQ(s.inv_scale(), row[3]) << "update " << i;
      hit_floor = hit_floor || s.scale() == s.min_scale();
      grew = grew || s.scale() > prev;
      prev = s.scale();
    }
    // The sequence exercises both directions (and the floor for config a).
    EXPECT_TRUE(grew);
    if (std::string(tag) == "a") {
      EXPECT_TRUE(hit_floor);
    }
  }
}

TEST(GradScaler, HysteresisThenBackoffThenGrowth) {
  DynamicGradScaler s(/*initial*/ 1024, /*min*/ 1, 2.0, 0.5, /*interval*/ 3, /*hysteresis*/ 2);
  s.update(true);  // first overflow: absorbed by hysteresis
  EXPECT_EQ(s.scale(), 1024.0f);
  s.update(true);  // second: halve
  EXPECT_EQ(s.scale(), 512.0f);
  s.update(true);  // still out of hysteresis: halve again
  EXPECT_EQ(s.scale(), 256.0f);
  s.update(false);
  s.update(false);
  EXPECT_EQ(s.scale(), 256.0f);
  s.update(true);  // a clean run shorter than the window does not restore the hysteresis
  EXPECT_EQ(s.scale(), 128.0f);
  for (int i = 0; i < 3; ++i) s.update(false);  // a full window: double, hysteresis restored
  EXPECT_EQ(s.scale(), 256.0f);
  EXPECT_EQ(s.hysteresis_tracker(), 2);
  s.update(true);
  EXPECT_EQ(s.scale(), 256.0f);
}

TEST(GradScaler, StateRoundTripAndConstant) {
  DynamicGradScaler a(65536, 1, 2.0, 0.5, 4, 2);
  for (bool f : {true, true, false, false, true}) a.update(f);
  DynamicGradScaler b(8, 1, 2.0, 0.5, 4, 2);
  b.load_state_dict(a.state_dict());
  for (bool f : {false, false, false, false, true, true, false}) {
    a.update(f);
    b.update(f);
    ASSERT_EQ(a.scale(), b.scale());
    ASSERT_EQ(a.growth_tracker(), b.growth_tracker());
    ASSERT_EQ(a.hysteresis_tracker(), b.hysteresis_tracker());
  }
  ConstantGradScaler c(128);
  c.update(true);
  c.update(false);
  EXPECT_EQ(c.scale(), 128.0f);
  EXPECT_EQ(c.inv_scale(), 1.0f / 128.0f);
  EXPECT_TRUE(c.state_dict().empty());
}

TEST(GradScaler, RejectsBadArguments) {
  EXPECT_THROW(ConstantGradScaler(0.0), Error);
  EXPECT_THROW(DynamicGradScaler(1024, 2048, 2.0, 0.5, 10, 2), Error);  // min above initial
  EXPECT_THROW(DynamicGradScaler(1024, 1, 1.0, 0.5, 10, 2), Error);     // no growth
  EXPECT_THROW(DynamicGradScaler(1024, 1, 2.0, 1.0, 10, 2), Error);     // no backoff
  EXPECT_THROW(DynamicGradScaler(1024, 1, 2.0, 0.5, 0, 2), Error);      // empty window
  EXPECT_THROW(DynamicGradScaler(1024, 1, 2.0, 0.5, 10, 0), Error);     // no hysteresis
  DynamicGradScaler s(1024, 1, 2.0, 0.5, 10, 2);
  try {
    s.load_state_dict(nlohmann::json{{"scale", 2.0}});
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("growth_tracker"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace mcore::testing
