// mcore/timers under MPI: the report gathers every rank's time. Rank r spends about 20 (r + 1) ms
// in the timer, so the minimum is rank 0's and the maximum the last rank's; a timer that ran on
// one rank only (another pipeline stage's phase) reports that rank's time; every rank gets the
// same max_times.
#include <gtest/gtest.h>

#include <chrono>
#include <string>
#include <thread>

#include "mcore/comm/distributed.h"
#include "mcore/timers/timers.h"

namespace mcore::testing {
namespace {

std::pair<double, double> min_max(const std::string& report, const std::string& name) {
  const size_t at = report.find(name + " ");
  EXPECT_NE(at, std::string::npos) << report;
  const size_t open = report.find(": (", at) + 3, comma = report.find(", ", open);
  return {std::stod(report.substr(open, comma - open)), std::stod(report.substr(comma + 2))};
}

TEST(TimersDist, MinAndMaxAcrossRanks) {
  const int rank = comm::get_rank(), size = comm::get_world_size();
  timers::Timers t(1);
  timers::Timer& a = t("phase", 1);
  a.start();
  std::this_thread::sleep_for(std::chrono::milliseconds(20 * (rank + 1)));
  a.stop();
  if (rank == size - 1) {
    timers::Timer& b = t("last-only", 1);
    b.start();
    std::this_thread::sleep_for(std::chrono::milliseconds(15));
    b.stop();
  }
  const auto mx = t.max_times({"phase", "last-only"}, comm::world(), 1.0, /*reset=*/false);
  ASSERT_EQ(mx.size(), 2u);
  EXPECT_GE(mx.at("phase"), 20.0 * size);
  auto r = t.report({"phase", "last-only"}, comm::world());
  ASSERT_TRUE(r.has_value());
  const auto [mn, mxp] = min_max(*r, "phase");
  EXPECT_GE(mn, 20.0);
  EXPECT_LT(mn, 20.0 * size);  // rank 0's ~20 ms, below the last rank's 20 x size
  EXPECT_GE(mxp, 20.0 * size);
  EXPECT_NEAR(mxp, mx.at("phase"), 0.006);  // the report rounds to 0.01 ms
  const auto [lo, hi] = min_max(*r, "last-only");
  EXPECT_EQ(lo, hi);
  EXPECT_GE(lo, 15.0);
}

}  // namespace
}  // namespace mcore::testing
