// mcore/timers: Megatron's phase timers on one process. Levels above the configured one give a
// timer that records nothing; times accumulate over start/stop pairs and reset when read; the
// report has Megatron's layout (name and a space padded with dots to 48 characters, then
// "(min, max)" in ms, "max" alone, or per rank), lists only timers that ran, in the order asked,
// and divides by the normalizer; ScopedTimer times through the process-wide instance.
#include <gtest/gtest.h>

#include <chrono>
#include <thread>

#include "mcore/base/error.h"
#include "mcore/timers/timers.h"

namespace mcore::timers {
namespace {

void busy_ms(int ms) {
  std::this_thread::sleep_for(std::chrono::milliseconds(ms));
}

TEST(Timers, LevelsAccumulationAndReset) {
  Timers t(1);
  EXPECT_TRUE(t.enabled(0));
  EXPECT_TRUE(t.enabled(1));
  EXPECT_FALSE(t.enabled(2));
  Timer& a = t("a", 1);
  a.start();
  busy_ms(20);
  a.stop();
  a.start();
  busy_ms(20);
  a.stop();
  const double e = a.elapsed(/*reset=*/false);
  EXPECT_GE(e, 0.040);
  EXPECT_LT(e, 2.0);
  EXPECT_EQ(a.elapsed(true), e);
  EXPECT_EQ(a.elapsed(), 0.0);
  // Level 2 is off: the timer records nothing and can be started and stopped freely.
  Timer& off = t("fine", 2);
  off.start();
  off.start();
  busy_ms(5);
  off.stop();
  EXPECT_EQ(off.elapsed(), 0.0);
  // A name keeps its level.
  EXPECT_THROW(t("a", 0), Error);
  // Misuse of an enabled timer is an error, not a silent wrong time.
  EXPECT_THROW(a.stop(), Error);
  EXPECT_THROW(Timers(3), Error);
  EXPECT_THROW(Timers(1, "median"), Error);
}

TEST(Timers, ReportHasMegatronsLayout) {
  Timers t(2);
  Timer& fb = t("forward-backward", 1);
  fb.start();
  busy_ms(30);
  fb.stop();
  t("optimizer", 1);  // created, never run: left out
  auto r = t.report({"optimizer", "forward-backward", "unknown"}, nullptr, /*normalizer=*/3.0,
                    /*reset=*/false);
  ASSERT_TRUE(r.has_value());
  const std::string head = "(min, max) time across ranks (ms):\n    forward-backward ";
  ASSERT_EQ(r->substr(0, head.size()), head) << *r;
  // "forward-backward " padded with dots to 48 characters, then ": (x, x)".
  const std::string name = "forward-backward " + std::string(48 - 17, '.');
  EXPECT_NE(r->find(name + ": ("), std::string::npos) << *r;
  EXPECT_EQ(r->find("optimizer"), std::string::npos) << *r;
  // 30+ ms over 3 iterations: 10+ ms each, min equal to max on one rank.
  const size_t open = r->find(": (") + 3, comma = r->find(", ", open);
  const double mn = std::stod(r->substr(open, comma - open));
  const double mx = std::stod(r->substr(comma + 2));
  EXPECT_EQ(mn, mx);
  EXPECT_GE(mn, 10.0);
  EXPECT_LT(mn, 600.0);

  Timers only_max(1, "max");
  Timer& x = only_max("x", 0);
  x.start();
  x.stop();
  auto m = only_max.report({"x"}, nullptr);
  ASSERT_TRUE(m.has_value());
  EXPECT_EQ(m->rfind("max time across ranks (ms):\n    x " + std::string(46, '.') + ": ", 0), 0u)
      << *m;
  Timers all(1, "all");
  Timer& y = all("y", 1);
  y.start();
  busy_ms(2);
  y.stop();
  auto a = all.report({"y"}, nullptr);
  ASSERT_TRUE(a.has_value());
  EXPECT_EQ(a->rfind("times across ranks (ms):\n  y:\n     rank  0: ", 0), 0u) << *a;
  // Reading resets: nothing ran since.
  EXPECT_FALSE(all.report({"y"}, nullptr).has_value());
}

TEST(Timers, ScopedTimerUsesTheGlobalInstance) {
  { ScopedTimer nothing("a", 0); }  // no global: a no-op
  Timers t(1);
  set_global(&t);
  {
    ScopedTimer s("phase", 1);
    busy_ms(10);
  }
  { ScopedTimer fine("fine", 2); }  // above the level: not created
  set_global(nullptr);
  EXPECT_GE(t("phase", 1).elapsed(false), 0.010);
  EXPECT_FALSE(t.report({"fine"}, nullptr).has_value());
}

}  // namespace
}  // namespace mcore::timers
