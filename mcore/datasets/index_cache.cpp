#include "mcore/datasets/index_cache.h"

#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <random>
#include <regex>
#include <sstream>
#include <string_view>

#include "mcore/base/error.h"

namespace mcore::datasets {

namespace {

int descr_size(const std::string& d) {
  if (d == "<i2" || d == "<u2") return 2;
  if (d == "<i4" || d == "<u4") return 4;
  if (d == "<i8") return 8;
  if (d == "|i1" || d == "|u1") return 1;
  return 0;
}

template <class T>
void widen(const char* src, size_t n, int64_t* out) {
  for (size_t i = 0; i < n; ++i) {
    T v;
    std::memcpy(&v, src + i * sizeof(T), sizeof(T));
    out[i] = static_cast<int64_t>(v);
  }
}

// A temporary name no other writer uses: the pid alone repeats across hosts sharing a file
// system and across containers (both running as pid 1, say), whose writers then clobbered each
// other's file. Host name, pid and a random draw make it unique.
std::string unique_tmp(const std::string& path) {
  char host[64] = {};
  ::gethostname(host, sizeof(host) - 1);
  static thread_local std::mt19937_64 rng{std::random_device{}()};
  return path + ".tmp." + host + "." + std::to_string(::getpid()) + "." +
         std::to_string(rng() % 1000000000);
}

// Writes `parts` to `path` through a temporary file renamed into place, so readers see the old
// file or the whole new one. On failure the temporary file is removed and the error names the
// cause (e.g. no space left on the device).
void write_atomic(const std::string& path, std::initializer_list<std::string_view> parts) {
  const std::string tmp = unique_tmp(path);
  bool ok;
  {
    std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
    MCORE_CHECK(f) << "cannot write '" << tmp << "': " << std::strerror(errno);
    for (std::string_view p : parts) f.write(p.data(), static_cast<std::streamsize>(p.size()));
    f.flush();
    ok = static_cast<bool>(f);
  }
  const int err = errno;
  if (!ok) {
    std::remove(tmp.c_str());
    MCORE_FAIL() << "error writing '" << tmp << "': " << std::strerror(err);
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    const int rename_err = errno;
    std::remove(tmp.c_str());
    MCORE_FAIL() << "cannot rename '" << tmp << "' to '" << path
                 << "': " << std::strerror(rename_err);
  }
}

}  // namespace

bool file_exists(const std::string& path) {
  std::error_code ec;
  return std::filesystem::is_regular_file(path, ec);
}

void make_dirs(const std::string& path) {
  std::error_code ec;
  std::filesystem::create_directories(path, ec);
  MCORE_CHECK(!ec) << "cannot create the dataset cache directory '" << path << "': " << ec.message()
                   << " (set --data-cache-path to a writable directory)";
}

void save_index_npy(const std::string& path, const std::string& descr,
                    const std::vector<int64_t>& shape, const std::vector<int64_t>& values) {
  const int size = descr_size(descr);
  MCORE_CHECK(size > 0) << "save_index_npy: unsupported descr " << descr;
  std::string shp = "(";
  for (size_t i = 0; i < shape.size(); ++i)
    shp +=
        std::to_string(shape[i]) + (shape.size() == 1 ? "," : (i + 1 < shape.size() ? ", " : ""));
  shp += ")";
  std::string header = "{'descr': '" + descr + "', 'fortran_order': False, 'shape': " + shp + ", }";
  const size_t total = 10 + header.size() + 1;
  header += std::string((64 - total % 64) % 64, ' ') + "\n";
  std::vector<char> data(values.size() * static_cast<size_t>(size));
  for (size_t i = 0; i < values.size(); ++i) {
    const int64_t v = values[i];
    switch (size) {
      case 1: {
        int8_t x = static_cast<int8_t>(v);
        std::memcpy(&data[i], &x, 1);
        break;
      }
      case 2: {
        int16_t x = static_cast<int16_t>(v);
        std::memcpy(&data[2 * i], &x, 2);
        break;
      }
      case 4: {
        uint32_t x = static_cast<uint32_t>(v);
        std::memcpy(&data[4 * i], &x, 4);
        break;
      }
      default:
        std::memcpy(&data[8 * i], &v, 8);
    }
  }
  const uint16_t len = static_cast<uint16_t>(header.size());
  write_atomic(path, {std::string_view("\x93NUMPY\x01\x00", 8),
                      std::string_view(reinterpret_cast<const char*>(&len), 2), header,
                      std::string_view(data.data(), data.size())});
}

IndexArray load_index_npy(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  MCORE_CHECK(f) << "cannot open index cache '" << path << "'";
  std::string all((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  MCORE_CHECK(all.size() >= 10 && std::memcmp(all.data(), "\x93NUMPY", 6) == 0)
      << "index cache '" << path << "' is not a .npy file (bad magic)";
  const int major = static_cast<unsigned char>(all[6]);
  size_t header_len, start;
  if (major == 1) {
    uint16_t h;
    std::memcpy(&h, all.data() + 8, 2);
    header_len = h;
    start = 10;
  } else {
    MCORE_CHECK((major == 2 || major == 3) && all.size() >= 12)
        << "index cache '" << path << "': unsupported .npy version " << major;
    uint32_t h;
    std::memcpy(&h, all.data() + 8, 4);
    header_len = h;
    start = 12;
  }
  MCORE_CHECK(all.size() >= start + header_len) << "index cache '" << path << "': truncated header";
  const std::string header = all.substr(start, header_len);
  IndexArray out;
  std::smatch m;
  MCORE_CHECK(std::regex_search(header, m, std::regex("'descr':\\s*'([^']+)'")))
      << "index cache '" << path << "': header has no descr";
  out.descr = m[1];
  const int size = descr_size(out.descr);
  MCORE_CHECK(size > 0) << "index cache '" << path << "': unexpected dtype '" << out.descr << "'";
  MCORE_CHECK(header.find("'fortran_order': False") != std::string::npos)
      << "index cache '" << path << "': Fortran order is not supported";
  MCORE_CHECK(std::regex_search(header, m, std::regex("'shape':\\s*\\(([^)]*)\\)")))
      << "index cache '" << path << "': header has no shape";
  const std::string dims = m[1];
  std::regex num("\\d+");
  size_t count = 1;
  for (auto it = std::sregex_iterator(dims.begin(), dims.end(), num); it != std::sregex_iterator();
       ++it) {
    out.shape.push_back(std::stoll(it->str()));
    count *= static_cast<size_t>(out.shape.back());
  }
  const size_t data_bytes = all.size() - start - header_len;
  MCORE_CHECK(data_bytes == count * static_cast<size_t>(size))
      << "index cache '" << path << "': " << data_bytes << " data bytes, expected "
      << count * static_cast<size_t>(size) << " for shape (" << dims << ") of " << out.descr
      << " (truncated or corrupt)";
  out.values.resize(count);
  const char* src = all.data() + start + header_len;
  if (out.descr == "<i2")
    widen<int16_t>(src, count, out.values.data());
  else if (out.descr == "<u2")
    widen<uint16_t>(src, count, out.values.data());
  else if (out.descr == "<i4")
    widen<int32_t>(src, count, out.values.data());
  else if (out.descr == "<u4")
    widen<uint32_t>(src, count, out.values.data());
  else if (out.descr == "|i1")
    widen<int8_t>(src, count, out.values.data());
  else if (out.descr == "|u1")
    widen<uint8_t>(src, count, out.values.data());
  else
    widen<int64_t>(src, count, out.values.data());
  return out;
}

void write_text_atomic(const std::string& path, const std::string& text) {
  write_atomic(path, {text});
}

bool read_text(const std::string& path, std::string* text) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return false;
  std::ostringstream ss;
  ss << f.rdbuf();
  *text = ss.str();
  return true;
}

}  // namespace mcore::datasets
