// Small POSIX file helpers for files that must never be seen half-written: a writer that checks
// every write and fsyncs, atomic replacement of a small file (temporary name, fsync, rename,
// fsync of the directory), and a read-only memory map. Errors are mcore::Error naming the path
// and the system's reason (e.g. "No space left on device").
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

namespace mcore {

// Sequential writer over a file descriptor; optionally keeps a running CRC-32C of the bytes.
class FileWriter {
 public:
  // Creates or truncates `path`.
  explicit FileWriter(const std::string& path);
  ~FileWriter();  // closes without fsync if close() was not called
  FileWriter(const FileWriter&) = delete;
  FileWriter& operator=(const FileWriter&) = delete;

  void write(const void* data, size_t n);
  void write(std::string_view s) { write(s.data(), s.size()); }
  // fsync, then close; errors (a full disk often shows only here) name the file.
  void close(bool sync = true);

  uint64_t bytes_written() const { return bytes_; }
  uint32_t crc32c() const { return crc_; }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  int fd_ = -1;
  uint64_t bytes_ = 0;
  uint32_t crc_ = 0;
};

// fsync of a directory, so that entries created or renamed in it survive a crash.
void fsync_directory(const std::string& dir);
// Writes `contents` to `path` atomically: `path.tmp.<pid>`, fsync, rename over `path`, fsync of
// the parent directory. A reader sees the old file or the new one, never a mixture.
void write_file_atomic(const std::string& path, std::string_view contents);
// Whole file as a string; errors name the path.
std::string read_file(const std::string& path);

// A read-only mapping of a whole file (empty files map to nothing). Shared by the tensors that
// view into it, so it lives as long as the last of them.
class MappedFile {
 public:
  static std::shared_ptr<MappedFile> open(const std::string& path);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }

 private:
  MappedFile() = default;
  std::string path_;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

}  // namespace mcore
