// Errors. Every failure mcore reports is an mcore::Error carrying file:line and a message that
// names the problem and, where there is one, the fix. MCORE_CHECK(cond) << "text" streams the
// message and throws when cond is false, so checks read like assertions but never abort.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>

namespace mcore {

class Error : public std::runtime_error {
 public:
  Error(std::string message, const char* file, int line);
  // The message without the "file:line: " prefix.
  const std::string& message() const { return message_; }
  const char* file() const { return file_; }
  int line() const { return line_; }

 private:
  std::string message_;
  const char* file_;
  int line_;
};

namespace detail {

// Collects the streamed message; its destructor throws. It lives only inside the MCORE_CHECK
// expression, so the throw happens at the end of that statement.
class ErrorBuilder {
 public:
  ErrorBuilder(const char* file, int line, const char* condition);
  ErrorBuilder(const ErrorBuilder&) = delete;
  ErrorBuilder& operator=(const ErrorBuilder&) = delete;
  ~ErrorBuilder() noexcept(false);

  template <class T>
  ErrorBuilder& operator<<(const T& value) {
    stream_ << value;
    return *this;
  }

 private:
  std::ostringstream stream_;
  const char* file_;
  int line_;
  const char* condition_;
  int uncaught_;
};

}  // namespace detail
}  // namespace mcore

// A for-statement rather than if/else, so `if (x) MCORE_CHECK(y) << ...;` has no dangling else.
#define MCORE_CHECK(cond)                                                              \
  for (bool mcore_check_failed_ = !__builtin_expect(!!(cond), 1); mcore_check_failed_; \
       mcore_check_failed_ = false)                                                    \
  ::mcore::detail::ErrorBuilder(__FILE__, __LINE__, #cond)

// Unconditional failure with a message: MCORE_FAIL() << "unsupported dtype " << d;
#define MCORE_FAIL() ::mcore::detail::ErrorBuilder(__FILE__, __LINE__, nullptr)
