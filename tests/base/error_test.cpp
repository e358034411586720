#include <gtest/gtest.h>

#include "mcore/base/error.h"
#include "mcore/base/logging.h"

namespace mcore {

TEST(Error, CheckThrowsWithFileLineAndMessage) {
  try {
    int a = 3, b = 4;
    MCORE_CHECK(a == b) << "a=" << a << " b=" << b;
    FAIL() << "MCORE_CHECK did not throw";
  } catch (const Error& e) {
    EXPECT_EQ(e.message(), "a=3 b=4");
    EXPECT_NE(std::string(e.what()).find("tests/base/error_test.cpp:"), std::string::npos)
        << e.what();
    EXPECT_GT(e.line(), 0);
  }
}

TEST(Error, CheckPassesSilently) {
  EXPECT_NO_THROW({ MCORE_CHECK(1 + 1 == 2) << "never"; });
}

TEST(Error, EmptyMessageNamesTheCondition) {
  try {
    MCORE_CHECK(2 < 1);
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.message(), "check failed: 2 < 1");
  }
}

TEST(Logging, LevelFiltering) {
  LogLevel prev = log_level();
  set_log_level(LogLevel::kWarning);
  EXPECT_FALSE(log_enabled(LogLevel::kInfo));
  EXPECT_TRUE(log_enabled(LogLevel::kError));
  set_log_level(prev);
}

}  // namespace mcore
