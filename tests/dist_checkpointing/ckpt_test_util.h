// Helpers for the checkpoint and safetensors tests: scratch directories, raw file edits
// (truncate, flip a byte) and running a Python checker script.
#pragma once

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "mcore/base/error.h"

namespace mcore::testing {

namespace fs = std::filesystem;

// A fresh directory under the system temp dir, removed at scope exit.
class ScratchDir {
 public:
  explicit ScratchDir(const std::string& name) {
    path_ = fs::temp_directory_path() / ("mcore_" + name + "_" + std::to_string(::getpid()) + "_" +
                                         std::to_string(counter()++));
    fs::remove_all(path_);
    fs::create_directories(path_);
  }
  ~ScratchDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  const fs::path& path() const { return path_; }
  std::string str() const { return path_.string(); }
  fs::path operator/(const std::string& s) const { return path_ / s; }

 private:
  static int& counter() {
    static int c = 0;
    return c;
  }
  fs::path path_;
};

inline std::string read_bytes(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}
inline void write_bytes(const fs::path& p, const std::string& s) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out << s;
}
inline void truncate_file(const fs::path& p, uintmax_t new_size) {
  fs::resize_file(p, new_size);
}
inline void flip_byte(const fs::path& p, size_t offset) {
  std::string s = read_bytes(p);
  s.at(offset) ^= 0x5a;
  write_bytes(p, s);
}

// Runs a shell command, capturing stdout and stderr; returns the exit status.
inline int run_command(const std::string& cmd, std::string* output) {
  std::string full = cmd + " 2>&1";
  FILE* p = popen(full.c_str(), "r");
  if (p == nullptr) return -1;
  char buf[4096];
  size_t n;
  output->clear();
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) output->append(buf, n);
  const int status = pclose(p);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

// Expects `fn` to throw an mcore::Error whose message contains every one of `parts`.
template <class F>
void expect_error(F&& fn, std::initializer_list<std::string> parts) {
  try {
    fn();
    ADD_FAILURE() << "expected an mcore::Error mentioning \"" << *parts.begin() << "\"";
  } catch (const Error& e) {
    for (const std::string& p : parts) {
      EXPECT_NE(e.message().find(p), std::string::npos)
          << "error message lacks \"" << p << "\":\n  " << e.message();
    }
  }
}

}  // namespace mcore::testing
