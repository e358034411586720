#include "mcore/training/jsonl_logger.h"

#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <sstream>

#include "mcore/base/error.h"
#include "mcore/base/file_io.h"
#include "mcore/base/logging.h"

namespace mcore::training {
namespace {

namespace fs = std::filesystem;

std::vector<std::string> split_lines(const std::string& text, bool* partial_last) {
  std::vector<std::string> lines;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t nl = text.find('\n', pos);
    if (nl == std::string::npos) {
      lines.push_back(text.substr(pos));
      *partial_last = true;
      return lines;
    }
    lines.push_back(text.substr(pos, nl - pos));
    pos = nl + 1;
  }
  *partial_last = false;
  return lines;
}

}  // namespace

JsonlLogger::JsonlLogger(const std::string& path, int64_t resume_iteration) : path_(path) {
  const fs::path parent = fs::path(path).parent_path();
  if (!parent.empty()) {
    std::error_code ec;
    fs::create_directories(parent, ec);
    MCORE_CHECK(!ec) << "jsonl log: cannot create " << parent.string() << ": " << ec.message();
  }
  if (resume_iteration >= 0 && fs::exists(path)) {
    bool partial = false;
    const std::vector<std::string> lines = split_lines(read_file(path), &partial);
    std::string kept;
    size_t dropped = 0;
    for (size_t i = 0; i < lines.size(); ++i) {
      if (lines[i].empty()) continue;
      nlohmann::json j = nlohmann::json::parse(lines[i], nullptr, /*allow_exceptions=*/false);
      // A kill mid-write leaves a partial last line: not JSON, or JSON without its newline.
      if (j.is_discarded() || (partial && i + 1 == lines.size())) {
        MCORE_CHECK(i + 1 == lines.size()) << "jsonl log " << path << ": line " << i + 1
                                           << " is not JSON: " << lines[i].substr(0, 80);
        ++dropped;
        continue;
      }
      if (j.is_object() && j.contains("iteration") && j["iteration"].is_number_integer() &&
          j["iteration"].get<int64_t>() > resume_iteration) {
        ++dropped;
        continue;
      }
      kept += lines[i] + "\n";
    }
    if (dropped > 0) {
      MCORE_LOG(INFO) << "jsonl log " << path << ": dropped " << dropped
                      << " record(s) after iteration " << resume_iteration << " (resuming)";
      write_file_atomic(path, kept);
    }
  }
  file_ = std::fopen(path.c_str(), "ab");
  MCORE_CHECK(file_ != nullptr) << "jsonl log: cannot open " << path << ": "
                                << std::strerror(errno);
}

JsonlLogger::~JsonlLogger() {
  try {
    close();
  } catch (const std::exception& e) {
    MCORE_LOG(ERROR) << e.what();
  }
}

void JsonlLogger::log(const nlohmann::ordered_json& record) {
  MCORE_CHECK(file_ != nullptr) << "jsonl log: write to " << path_ << " after close()";
  MCORE_CHECK(record.is_object()) << "jsonl log: a record must be a JSON object, got "
                                  << record.dump();
  // dump() writes NaN/Inf as null; error_handler replace keeps invalid UTF-8 in tags from
  // throwing mid-run.
  const std::string line =
      record.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace) + "\n";
  MCORE_CHECK(std::fwrite(line.data(), 1, line.size(), file_) == line.size() &&
              std::fflush(file_) == 0)
      << "jsonl log: writing " << path_ << " failed: " << std::strerror(errno);
}

void JsonlLogger::log_iteration(int64_t iteration,
                                const std::vector<std::pair<std::string, double>>& metrics) {
  nlohmann::ordered_json j;
  j["iteration"] = iteration;
  j["time"] =
      std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
  for (const auto& [name, v] : metrics) {
    if (std::isfinite(v)) {
      j[name] = v;
    } else {
      j[name] = nullptr;
    }
  }
  log(j);
}

void JsonlLogger::close() {
  if (file_ == nullptr) return;
  std::FILE* f = file_;
  file_ = nullptr;
  MCORE_CHECK(std::fclose(f) == 0)
      << "jsonl log: closing " << path_ << " failed: " << std::strerror(errno);
}

std::vector<nlohmann::json> read_jsonl(const std::string& path, bool allow_partial_last_line) {
  MCORE_CHECK(fs::exists(path)) << "jsonl file " << path << " does not exist";
  bool partial = false;
  const std::vector<std::string> lines = split_lines(read_file(path), &partial);
  std::vector<nlohmann::json> out;
  for (size_t i = 0; i < lines.size(); ++i) {
    if (lines[i].empty()) continue;
    const bool last_partial = partial && i + 1 == lines.size();
    if (last_partial && allow_partial_last_line) break;
    nlohmann::json j = nlohmann::json::parse(lines[i], nullptr, false);
    MCORE_CHECK(!j.is_discarded() && j.is_object() && !last_partial)
        << "jsonl file " << path << ", line " << i + 1 << ": "
        << (last_partial ? "the last line has no newline (a write cut short)" : "not a JSON object")
        << ": " << lines[i].substr(0, 80);
    out.push_back(std::move(j));
  }
  return out;
}

}  // namespace mcore::training
