#include "mcore/base/logging.h"

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <string>

namespace mcore {

namespace {
std::atomic<int> g_rank{-1};

LogLevel level_from_env() {
  const char* env = std::getenv("MCORE_LOG_LEVEL");
  if (!env) return LogLevel::kInfo;
  std::string v(env);
  if (v == "debug") return LogLevel::kDebug;
  if (v == "warning" || v == "warn") return LogLevel::kWarning;
  if (v == "error") return LogLevel::kError;
  return LogLevel::kInfo;
}

std::atomic<int>& level_ref() {
  static std::atomic<int> level{static_cast<int>(level_from_env())};
  return level;
}

const char* level_name(LogLevel l) {
  switch (l) {
    case LogLevel::kDebug:
      return "DEBUG";
    case LogLevel::kInfo:
      return "INFO";
    case LogLevel::kWarning:
      return "WARNING";
    case LogLevel::kError:
      return "ERROR";
  }
  return "?";
}
}  // namespace

void set_log_rank(int rank) {
  g_rank = rank;
}
int log_rank() {
  return g_rank;
}
void set_log_level(LogLevel level) {
  level_ref() = static_cast<int>(level);
}
LogLevel log_level() {
  return static_cast<LogLevel>(level_ref().load());
}
bool log_enabled(LogLevel level) {
  return static_cast<int>(level) >= level_ref().load();
}

namespace detail {
LogMessage::~LogMessage() {
  static std::mutex mu;
  std::string line;
  int rank = g_rank;
  if (rank >= 0) line += "[rank " + std::to_string(rank) + "] ";
  line += std::string(level_name(level_)) + " " + stream_.str() + "\n";
  std::lock_guard<std::mutex> lock(mu);
  std::fputs(line.c_str(), stderr);
}
}  // namespace detail
}  // namespace mcore
