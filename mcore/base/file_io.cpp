#include "mcore/base/file_io.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include "mcore/base/crc32c.h"
#include "mcore/base/error.h"

namespace mcore {
namespace {

std::string sys_error() {
  return std::strerror(errno);
}

}  // namespace

FileWriter::FileWriter(const std::string& path) : path_(path) {
  fd_ = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  MCORE_CHECK(fd_ >= 0) << "cannot create " << path << ": " << sys_error();
}

FileWriter::~FileWriter() {
  if (fd_ >= 0) ::close(fd_);
}

void FileWriter::write(const void* data, size_t n) {
  MCORE_CHECK(fd_ >= 0) << "write to " << path_ << " after close()";
  crc_ = crc32c_extend(crc_, data, n);
  const auto* p = static_cast<const char*>(data);
  size_t left = n;
  while (left > 0) {
    // Large writes go in chunks: Linux caps one write() at about 2 GiB.
    const ssize_t w = ::write(fd_, p, std::min<size_t>(left, size_t(1) << 30));
    if (w < 0 && errno == EINTR) continue;
    MCORE_CHECK(w > 0) << "writing " << path_ << " failed after " << bytes_
                       << " bytes: " << (w < 0 ? sys_error() : std::string("write returned 0"));
    p += w;
    left -= static_cast<size_t>(w);
    bytes_ += static_cast<uint64_t>(w);
  }
}

void FileWriter::close(bool sync) {
  if (fd_ < 0) return;
  const int fd = fd_;
  fd_ = -1;
  if (sync && ::fsync(fd) != 0) {
    const std::string why = sys_error();
    ::close(fd);
    MCORE_FAIL() << "fsync of " << path_ << " failed: " << why;
  }
  MCORE_CHECK(::close(fd) == 0) << "closing " << path_ << " failed: " << sys_error();
}

void fsync_directory(const std::string& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  MCORE_CHECK(fd >= 0) << "cannot open directory " << dir << " to fsync it: " << sys_error();
  const int rc = ::fsync(fd);
  const int err = rc != 0 ? errno : 0;
  const std::string why = rc != 0 ? std::strerror(err) : "";
  ::close(fd);
  // Some file systems (e.g. certain network mounts) refuse fsync on directories: the data is
  // already synced file by file, so only report real I/O errors.
  MCORE_CHECK(rc == 0 || err == EINVAL || err == EROFS)
      << "fsync of directory " << dir << " failed: " << why;
}

void write_file_atomic(const std::string& path, std::string_view contents) {
  namespace fs = std::filesystem;
  const std::string tmp = path + ".tmp." + std::to_string(::getpid());
  {
    FileWriter w(tmp);
    w.write(contents);
    w.close(/*sync=*/true);
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    const std::string why = sys_error();
    std::remove(tmp.c_str());
    MCORE_FAIL() << "cannot rename " << tmp << " to " << path << ": " << why;
  }
  fs::path parent = fs::path(path).parent_path();
  fsync_directory(parent.empty() ? "." : parent.string());
}

std::string read_file(const std::string& path) {
  auto m = MappedFile::open(path);
  return std::string(reinterpret_cast<const char*>(m->data()), m->size());
}

std::shared_ptr<MappedFile> MappedFile::open(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  MCORE_CHECK(fd >= 0) << "cannot open " << path << ": " << sys_error();
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    const std::string why = sys_error();
    ::close(fd);
    MCORE_FAIL() << "cannot stat " << path << ": " << why;
  }
  if (S_ISDIR(st.st_mode)) {
    ::close(fd);
    MCORE_FAIL() << path << " is a directory, expected a file";
  }
  std::shared_ptr<MappedFile> m(new MappedFile());
  m->path_ = path;
  m->size_ = static_cast<size_t>(st.st_size);
  if (m->size_ > 0) {
    // Private and writable: tensors viewing the file may be modified in place (copy-on-write);
    // the file itself never changes.
    void* p = ::mmap(nullptr, m->size_, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
      const std::string why = sys_error();
      ::close(fd);
      MCORE_FAIL() << "cannot map " << path << " (" << m->size_ << " bytes): " << why;
    }
    m->data_ = static_cast<const uint8_t*>(p);
  }
  ::close(fd);  // the mapping keeps the file referenced
  return m;
}

MappedFile::~MappedFile() {
  if (data_ != nullptr) ::munmap(const_cast<uint8_t*>(data_), size_);
}

}  // namespace mcore
