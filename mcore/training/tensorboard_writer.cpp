#include "mcore/training/tensorboard_writer.h"

#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>

#include "mcore/base/crc32c.h"
#include "mcore/base/error.h"
#include "mcore/base/logging.h"

namespace mcore::training {
namespace {

namespace fs = std::filesystem;

// Protobuf wire format: a key is (field number << 3 | wire type); 0 varint, 1 fixed64,
// 2 length-delimited, 5 fixed32.
void put_varint(std::string& out, uint64_t v) {
  while (v >= 0x80) {
    out.push_back(static_cast<char>((v & 0x7f) | 0x80));
    v >>= 7;
  }
  out.push_back(static_cast<char>(v));
}
void put_key(std::string& out, int field, int wire_type) {
  put_varint(out, static_cast<uint64_t>(field) << 3 | static_cast<uint64_t>(wire_type));
}
template <class T>
void put_fixed(std::string& out, T v) {
  char b[sizeof(T)];
  std::memcpy(b, &v, sizeof(T));  // little-endian, as the wire format
  out.append(b, sizeof(T));
}
void put_bytes(std::string& out, int field, const std::string& s) {
  put_key(out, field, 2);
  put_varint(out, s.size());
  out += s;
}

double now_seconds() {
  using namespace std::chrono;
  return duration<double>(system_clock::now().time_since_epoch()).count();
}

}  // namespace

std::string encode_event(double wall_time, int64_t step, const std::string& file_version,
                         const std::vector<std::pair<std::string, double>>& values) {
  std::string ev;
  put_key(ev, 1, 1);  // wall_time
  put_fixed<double>(ev, wall_time);
  if (step != 0) {  // proto3: a zero scalar is not written
    put_key(ev, 2, 0);
    put_varint(ev, static_cast<uint64_t>(step));  // negative int64: 10-byte two's complement
  }
  if (!file_version.empty()) put_bytes(ev, 3, file_version);
  if (!values.empty()) {
    std::string summary;
    for (const auto& [tag, v] : values) {
      std::string value;
      put_bytes(value, 1, tag);
      put_key(value, 2, 5);  // simple_value: float
      put_fixed<float>(value, static_cast<float>(v));
      put_bytes(summary, 1, value);
    }
    put_bytes(ev, 5, summary);
  }
  return ev;
}

std::string frame_record(const std::string& data) {
  std::string out;
  const uint64_t len = data.size();
  put_fixed<uint64_t>(out, len);
  put_fixed<uint32_t>(out, crc32c_mask(crc32c(&len, 8)));
  out += data;
  put_fixed<uint32_t>(out, crc32c_mask(crc32c(data.data(), data.size())));
  return out;
}

TensorBoardWriter::TensorBoardWriter(const std::string& log_dir,
                                     const std::string& filename_suffix) {
  std::error_code ec;
  fs::create_directories(log_dir, ec);
  MCORE_CHECK(!ec) << "tensorboard: cannot create log directory " << log_dir << ": "
                   << ec.message();
  char host[256] = "localhost";
  ::gethostname(host, sizeof host - 1);
  const double t = now_seconds();
  const std::string base =
      (fs::path(log_dir) / ("events.out.tfevents." + std::to_string(static_cast<int64_t>(t)) + "." +
                            host + filename_suffix))
          .string();
  // Two writers started in the same second in one directory must not share a file.
  path_ = base;
  for (int n = 1; fs::exists(path_); ++n) path_ = base + "." + std::to_string(n);
  file_ = std::fopen(path_.c_str(), "wbx");
  MCORE_CHECK(file_ != nullptr) << "tensorboard: cannot create event file " << path_ << ": "
                                << std::strerror(errno);
  write_record(encode_event(t, 0, "brain.Event:2", {}));
  flush();
}

TensorBoardWriter::~TensorBoardWriter() {
  try {
    close();
  } catch (const std::exception& e) {
    MCORE_LOG(ERROR) << e.what();
  }
}

void TensorBoardWriter::write_record(const std::string& data) {
  MCORE_CHECK(file_ != nullptr) << "tensorboard: write to " << path_ << " after close()";
  const std::string rec = frame_record(data);
  MCORE_CHECK(std::fwrite(rec.data(), 1, rec.size(), file_) == rec.size())
      << "tensorboard: writing " << path_ << " failed: " << std::strerror(errno);
}

void TensorBoardWriter::add_scalar(const std::string& tag, double value, int64_t step,
                                   double wall_time) {
  add_scalars({{tag, value}}, step, wall_time);
}

void TensorBoardWriter::add_scalars(const std::vector<std::pair<std::string, double>>& values,
                                    int64_t step, double wall_time) {
  if (values.empty()) return;
  for (const auto& [tag, v] : values) {
    MCORE_CHECK(!tag.empty()) << "tensorboard: empty tag (value " << v << ", step " << step << ")";
  }
  write_record(encode_event(wall_time < 0 ? now_seconds() : wall_time, step, "", values));
  // The trainer logs once per interval; flushing each time keeps the file readable while
  // training runs and loses nothing on kill -9.
  flush();
}

void TensorBoardWriter::flush(bool sync) {
  if (file_ == nullptr) return;
  MCORE_CHECK(std::fflush(file_) == 0)
      << "tensorboard: flushing " << path_ << " failed: " << std::strerror(errno);
  if (sync) ::fsync(::fileno(file_));
}

void TensorBoardWriter::close() {
  if (file_ == nullptr) return;
  std::FILE* f = file_;
  file_ = nullptr;
  MCORE_CHECK(std::fclose(f) == 0)
      << "tensorboard: closing " << path_ << " failed: " << std::strerror(errno);
}

}  // namespace mcore::training

// ---- reading (tests, tools) ----

namespace mcore::training {
namespace {

// A protobuf reader over one message; errors carry `where`.
struct ProtoReader {
  const uint8_t* p;
  const uint8_t* end;
  const std::string& where;

  bool done() const { return p >= end; }
  uint64_t varint() {
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      MCORE_CHECK(p < end) << where << ": truncated varint";
      const uint8_t b = *p++;
      v |= static_cast<uint64_t>(b & 0x7f) << shift;
      if (!(b & 0x80)) return v;
    }
    MCORE_FAIL() << where << ": varint too long";
    return 0;
  }
  template <class T>
  T fixed() {
    MCORE_CHECK(end - p >= static_cast<ptrdiff_t>(sizeof(T))) << where << ": truncated field";
    T v;
    std::memcpy(&v, p, sizeof(T));
    p += sizeof(T);
    return v;
  }
  std::string_view bytes() {
    const uint64_t n = varint();
    MCORE_CHECK(static_cast<uint64_t>(end - p) >= n)
        << where << ": truncated length-delimited field";
    std::string_view s(reinterpret_cast<const char*>(p), n);
    p += n;
    return s;
  }
  void skip(int wire_type) {
    switch (wire_type) {
      case 0:
        varint();
        break;
      case 1:
        fixed<uint64_t>();
        break;
      case 2:
        bytes();
        break;
      case 5:
        fixed<uint32_t>();
        break;
      default:
        MCORE_FAIL() << where << ": unsupported protobuf wire type " << wire_type;
    }
  }
};

ProtoReader sub(std::string_view s, const std::string& where) {
  const auto* b = reinterpret_cast<const uint8_t*>(s.data());
  return ProtoReader{b, b + s.size(), where};
}

}  // namespace

EventFileContents read_event_file(const std::string& path) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  MCORE_CHECK(f != nullptr) << "tensorboard: cannot open event file " << path << ": "
                            << std::strerror(errno);
  std::string data;
  char buf[1 << 16];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) data.append(buf, n);
  std::fclose(f);

  EventFileContents out;
  size_t pos = 0;
  while (pos < data.size()) {
    const std::string where =
        "tensorboard event file " + path + ", record at byte " + std::to_string(pos);
    if (data.size() - pos < 12) {
      out.truncated_tail = true;
      break;
    }
    uint64_t len;
    uint32_t len_crc;
    std::memcpy(&len, data.data() + pos, 8);
    std::memcpy(&len_crc, data.data() + pos + 8, 4);
    MCORE_CHECK(crc32c_unmask(len_crc) == crc32c(&len, 8))
        << where << ": the length's CRC does not match (corrupt file)";
    if (data.size() - pos - 12 < len + 4) {
      out.truncated_tail = true;
      break;
    }
    const char* rec = data.data() + pos + 12;
    uint32_t data_crc;
    std::memcpy(&data_crc, rec + len, 4);
    MCORE_CHECK(crc32c_unmask(data_crc) == crc32c(rec, len))
        << where << ": the data's CRC does not match (corrupt file)";
    pos += 12 + len + 4;
    ++out.num_records;

    ProtoReader ev = sub(std::string_view(rec, len), where);
    double wall_time = 0;
    int64_t step = 0;
    std::vector<std::pair<std::string, float>> values;
    while (!ev.done()) {
      const uint64_t key = ev.varint();
      const int field = static_cast<int>(key >> 3), wire = static_cast<int>(key & 7);
      if (field == 1 && wire == 1) {
        wall_time = ev.fixed<double>();
      } else if (field == 2 && wire == 0) {
        step = static_cast<int64_t>(ev.varint());
      } else if (field == 3 && wire == 2) {
        std::string_view v = ev.bytes();
        if (out.num_records == 1) out.file_version = std::string(v);
      } else if (field == 5 && wire == 2) {
        ProtoReader summary = sub(ev.bytes(), where);
        while (!summary.done()) {
          const uint64_t sk = summary.varint();
          if (sk != (1 << 3 | 2)) {
            summary.skip(static_cast<int>(sk & 7));
            continue;
          }
          ProtoReader value = sub(summary.bytes(), where);
          std::string tag;
          bool has_simple = false;
          float simple = 0;
          while (!value.done()) {
            const uint64_t vk = value.varint();
            if (vk == (1 << 3 | 2)) {
              tag = std::string(value.bytes());
            } else if (vk == (2 << 3 | 5)) {
              simple = value.fixed<float>();
              has_simple = true;
            } else {
              value.skip(static_cast<int>(vk & 7));
            }
          }
          if (has_simple) values.emplace_back(tag, simple);
        }
      } else {
        ev.skip(wire);
      }
    }
    for (auto& [tag, v] : values) out.scalars.push_back({wall_time, step, tag, v});
  }
  return out;
}

}  // namespace mcore::training
