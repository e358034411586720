// The trainer's JSONL metrics file: one JSON object per line, one line per logged iteration
// ({"iteration": 100, "time": 1718000000.5, "lm loss": 3.21, "learning rate": 0.0003, ...}) and
// any other record the trainer adds (evaluation results). Each line is flushed as written, so
// a run killed at any moment leaves at most one partial last line; on resume the logger drops
// that line and the records after the checkpoint's iteration, so the file reads as one run.
// Non-finite numbers are written as null (JSON has no NaN or Infinity).
#pragma once

#include <cstdint>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

namespace mcore::training {

class JsonlLogger {
 public:
  // Appends to `path` (created with its directory if needed). resume_iteration >= 0: first
  // rewrites the file (atomically) without a partial last line and without records whose
  // "iteration" exceeds resume_iteration.
  explicit JsonlLogger(const std::string& path, int64_t resume_iteration = -1);
  ~JsonlLogger();
  JsonlLogger(const JsonlLogger&) = delete;
  JsonlLogger& operator=(const JsonlLogger&) = delete;

  // One object, one line, flushed.
  void log(const nlohmann::ordered_json& record);
  // {"iteration": iteration, "time": <unix seconds>, name: value, ...} in the given order.
  void log_iteration(int64_t iteration, const std::vector<std::pair<std::string, double>>& metrics);
  void close();
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  std::FILE* file_ = nullptr;
};

// Every record of a JSONL file; an unparsable line is an error naming the file and line
// (a partial last line too, unless allow_partial_last_line).
std::vector<nlohmann::json> read_jsonl(const std::string& path,
                                       bool allow_partial_last_line = false);

}  // namespace mcore::training
