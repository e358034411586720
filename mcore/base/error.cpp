#include "mcore/base/error.h"

#include <exception>

namespace mcore {

namespace {
std::string strip_dir(const char* file) {
  std::string f = file ? file : "?";
  // Keep the path from the repository's "mcore/" or "tests/" on: shorter and stable.
  for (const char* root : {"/mcore/", "/tests/", "/tools/", "/bench/"}) {
    auto pos = f.rfind(root);
    if (pos != std::string::npos) return f.substr(pos + 1);
  }
  return f;
}
}  // namespace

Error::Error(std::string message, const char* file, int line)
    : std::runtime_error(strip_dir(file) + ":" + std::to_string(line) + ": " + message),
      message_(std::move(message)),
      file_(file),
      line_(line) {}

namespace detail {

ErrorBuilder::ErrorBuilder(const char* file, int line, const char* condition)
    : file_(file), line_(line), condition_(condition), uncaught_(std::uncaught_exceptions()) {}

ErrorBuilder::~ErrorBuilder() noexcept(false) {
  std::string msg = stream_.str();
  if (msg.empty() && condition_) msg = std::string("check failed: ") + condition_;
  // Never throw while another exception is unwinding the stack (that would terminate).
  if (std::uncaught_exceptions() > uncaught_) return;
  throw Error(std::move(msg), file_, line_);
}

}  // namespace detail
}  // namespace mcore
