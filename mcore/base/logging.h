// Logging with levels and a rank prefix: MCORE_LOG(INFO) << "text". The level comes from
// MCORE_LOG_LEVEL (debug, info, warning, error; default info); the prefix "[rank N]" appears
// once the communication layer has told the logger the rank.
#pragma once

#include <sstream>

namespace mcore {

enum class LogLevel { kDebug = 0, kInfo = 1, kWarning = 2, kError = 3 };

void set_log_rank(int rank);
int log_rank();
void set_log_level(LogLevel level);
LogLevel log_level();
bool log_enabled(LogLevel level);

namespace detail {
class LogMessage {
 public:
  explicit LogMessage(LogLevel level) : level_(level) {}
  ~LogMessage();
  template <class T>
  LogMessage& operator<<(const T& value) {
    stream_ << value;
    return *this;
  }

 private:
  LogLevel level_;
  std::ostringstream stream_;
};
}  // namespace detail
}  // namespace mcore

#define MCORE_LOG_LEVEL_DEBUG ::mcore::LogLevel::kDebug
#define MCORE_LOG_LEVEL_INFO ::mcore::LogLevel::kInfo
#define MCORE_LOG_LEVEL_WARNING ::mcore::LogLevel::kWarning
#define MCORE_LOG_LEVEL_ERROR ::mcore::LogLevel::kError

#define MCORE_LOG(level)                                                                  \
  for (bool mcore_log_on_ = ::mcore::log_enabled(MCORE_LOG_LEVEL_##level); mcore_log_on_; \
       mcore_log_on_ = false)                                                             \
  ::mcore::detail::LogMessage(MCORE_LOG_LEVEL_##level)
