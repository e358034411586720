#include "mcore/datasets/indexed_dataset.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstring>
#include <limits>
#include <type_traits>
#include <utility>

#include "mcore/base/error.h"
#include "mcore/tensor/factory.h"

namespace mcore::datasets {

namespace {

constexpr char kMagic[9] = {'M', 'M', 'I', 'D', 'I', 'D', 'X', '\0', '\0'};
constexpr size_t kHeaderSize = 34;  // magic 9 + version 8 + dtype 1 + counts 16

struct CodeMap {
  int code;
  DType dtype;
};
constexpr CodeMap kCodes[] = {{1, DType::U8},  {2, DType::I8},  {3, DType::I16}, {4, DType::I32},
                              {5, DType::I64}, {6, DType::F64}, {7, DType::F32}, {8, DType::U16}};

template <class T>
T read_le(const char* p) {
  T v;
  std::memcpy(&v, p, sizeof(T));
  return v;
}

// Converts `count` values of src_dtype to dst_dtype (a dataset dtype) into `out`. Integer
// targets reject values they cannot hold instead of wrapping like numpy's cast would.
template <class Src, class Dst>
void convert_values(const Src* src, int64_t count, Dst* out) {
  for (int64_t i = 0; i < count; ++i) {
    if constexpr (std::is_integral_v<Dst>) {
      if constexpr (std::is_floating_point_v<Src>) {
        MCORE_CHECK(std::isfinite(src[i]) &&
                    src[i] >= static_cast<double>(std::numeric_limits<Dst>::min()) &&
                    src[i] <= static_cast<double>(std::numeric_limits<Dst>::max()))
            << "IndexedDatasetBuilder: value " << src[i] << " at position " << i
            << " does not fit the dataset dtype " << dtype_of<Dst>;
      } else {
        MCORE_CHECK(std::in_range<Dst>(src[i]))
            << "IndexedDatasetBuilder: token " << +src[i] << " at position " << i
            << " does not fit the dataset dtype "
            << dtype_of<Dst> << " (use int32 for vocabularies of 65500 tokens or more)";
      }
    }
    out[i] = static_cast<Dst>(src[i]);
  }
}

template <class Dst>
void convert_from(const void* src, DType src_dtype, int64_t count, Dst* out) {
  switch (src_dtype) {
    case DType::U8:
      return convert_values(static_cast<const uint8_t*>(src), count, out);
    case DType::I8:
      return convert_values(static_cast<const int8_t*>(src), count, out);
    case DType::I16:
      return convert_values(static_cast<const int16_t*>(src), count, out);
    case DType::U16:
      return convert_values(static_cast<const uint16_t*>(src), count, out);
    case DType::I32:
      return convert_values(static_cast<const int32_t*>(src), count, out);
    case DType::I64:
      return convert_values(static_cast<const int64_t*>(src), count, out);
    case DType::F32:
      return convert_values(static_cast<const float*>(src), count, out);
    case DType::F64:
      return convert_values(static_cast<const double*>(src), count, out);
    default:
      MCORE_FAIL() << "IndexedDatasetBuilder: cannot add items of dtype " << src_dtype
                   << " (expected an integer or float32/float64 tensor)";
  }
}

void convert_any(const void* src, DType src_dtype, int64_t count, DType dst, void* out) {
  switch (dst) {
    case DType::U8:
      return convert_from(src, src_dtype, count, static_cast<uint8_t*>(out));
    case DType::I8:
      return convert_from(src, src_dtype, count, static_cast<int8_t*>(out));
    case DType::I16:
      return convert_from(src, src_dtype, count, static_cast<int16_t*>(out));
    case DType::U16:
      return convert_from(src, src_dtype, count, static_cast<uint16_t*>(out));
    case DType::I32:
      return convert_from(src, src_dtype, count, static_cast<int32_t*>(out));
    case DType::I64:
      return convert_from(src, src_dtype, count, static_cast<int64_t*>(out));
    case DType::F32:
      return convert_from(src, src_dtype, count, static_cast<float*>(out));
    case DType::F64:
      return convert_from(src, src_dtype, count, static_cast<double*>(out));
    default:
      MCORE_FAIL() << "IndexedDataset: unsupported dtype " << dst;
  }
}

std::string errno_str() {
  return std::strerror(errno);
}

}  // namespace

DType dtype_from_code(int code) {
  for (const auto& c : kCodes)
    if (c.code == code) return c.dtype;
  MCORE_FAIL() << "unknown indexed-dataset dtype code " << code
               << " (valid: 1 uint8, 2 int8, 3 int16, 4 int32, 5 int64, 6 float64, 7 float32, "
                  "8 uint16)";
  throw 0;
}

int code_from_dtype(DType dtype) {
  for (const auto& c : kCodes)
    if (c.dtype == dtype) return c.code;
  MCORE_FAIL() << "dtype " << dtype
               << " has no indexed-dataset code (use uint8, int8, int16, uint16, int32, int64, "
                  "float32 or float64)";
  throw 0;
}

DType optimal_dtype(int64_t vocab_size) {
  return vocab_size < 65500 ? DType::U16 : DType::I32;
}

std::string get_idx_path(const std::string& prefix) {
  return prefix + ".idx";
}
std::string get_bin_path(const std::string& prefix) {
  return prefix + ".bin";
}

// ---------------------------------------------------------------------------------------------
// FileBuffer

FileBuffer::FileBuffer(const std::string& path, bool mmap) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  MCORE_CHECK(fd >= 0) << "cannot open '" << path << "': " << errno_str();
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    ::close(fd);
    MCORE_FAIL() << "cannot stat '" << path << "': " << errno_str();
  }
  size_ = static_cast<size_t>(st.st_size);
  if (size_ == 0) {
    ::close(fd);
    return;
  }
  if (mmap) {
    void* p = ::mmap(nullptr, size_, PROT_READ, MAP_SHARED, fd, 0);
    ::close(fd);
    MCORE_CHECK(p != MAP_FAILED) << "cannot mmap '" << path << "': " << errno_str();
    map_ = p;
    data_ = static_cast<const char*>(p);
    return;
  }
  owned_.resize(size_);
  size_t done = 0;
  while (done < size_) {
    ssize_t r = ::pread(fd, owned_.data() + done, size_ - done, static_cast<off_t>(done));
    if (r <= 0) {
      ::close(fd);
      MCORE_FAIL() << "error reading '" << path << "' at byte " << done << ": "
                   << (r == 0 ? "unexpected end of file" : errno_str());
    }
    done += static_cast<size_t>(r);
  }
  ::close(fd);
  data_ = owned_.data();
}

FileBuffer::~FileBuffer() {
  if (map_) ::munmap(map_, size_);
}

// ---------------------------------------------------------------------------------------------
// IndexedDataset

IndexedDataset::IndexedDataset(const std::string& path_prefix, bool multimodal, bool mmap)
    : prefix_(path_prefix),
      idx_path_(get_idx_path(path_prefix)),
      bin_path_(get_bin_path(path_prefix)),
      multimodal_(multimodal),
      mmap_(mmap) {
  MCORE_CHECK(exists(path_prefix))
      << "indexed dataset '" << path_prefix << "': " << idx_path_ << " and/or " << bin_path_
      << " not found (give --data-path the prefix without the .bin/.idx suffix)";
  // The index is always small next to the data and is read whole (mmap'd, as Megatron does).
  idx_ = std::make_unique<FileBuffer>(idx_path_, true);
  const char* p = idx_->data();
  const size_t size = idx_->size();
  const std::string where = "'" + idx_path_ + "'";

  MCORE_CHECK(size >= kHeaderSize)
      << where << ": file is " << size << " bytes, shorter than the 34-byte header (truncated?)";
  MCORE_CHECK(std::memcmp(p, kMagic, sizeof(kMagic)) == 0)
      << where << ": bad magic (field 'magic'): not a Megatron indexed dataset index "
      << "(expected MMIDIDX\\x00\\x00)";
  const uint64_t version = read_le<uint64_t>(p + 9);
  MCORE_CHECK(version == 1) << where << ": unsupported version " << version
                            << " (field 'version'; only version 1 exists)";
  const int code = static_cast<unsigned char>(p[17]);
  bool known = false;
  for (const auto& c : kCodes) known |= c.code == code;
  MCORE_CHECK(known) << where << ": unknown dtype code " << code
                     << " (field 'dtype'; valid codes are 1-8)";
  dtype_ = dtype_from_code(code);
  const uint64_t n = read_le<uint64_t>(p + 18);
  const uint64_t d = read_le<uint64_t>(p + 26);
  // Sizes first with overflow-safe bounds, so a corrupt count cannot make us read past the end.
  const uint64_t per_seq = 4 + 8 + (multimodal ? 1 : 0);
  MCORE_CHECK(n <= (size - kHeaderSize) / per_seq)
      << where << ": sequence_count " << n << " needs more bytes than the file's " << size
      << " (field 'sequence_count'; truncated or corrupt index)";
  MCORE_CHECK(d <= (size - kHeaderSize - n * per_seq) / 8)
      << where << ": document_count " << d << " needs more bytes than the file's " << size
      << " (field 'document_count'; truncated or corrupt index)";
  const uint64_t expected = kHeaderSize + n * per_seq + d * 8;
  MCORE_CHECK(expected == size)
      << where << ": file is " << size << " bytes but its header (sequence_count " << n
      << ", document_count " << d << (multimodal ? ", with sequence modes" : "") << ") implies "
      << expected << " bytes (field 'sequence_count'/'document_count')"
      << (!multimodal && size == expected + n
              ? "; the extra bytes look like sequence modes: open it as multimodal"
              : "");
  sequence_count_ = static_cast<int64_t>(n);
  document_count_ = static_cast<int64_t>(d);
  // The arrays follow the 34-byte header; int32 data at offset 34 is only 2-byte aligned, so
  // lengths are fine on x86 but keep the pointers typed for readability.
  lengths_ = reinterpret_cast<const int32_t*>(p + kHeaderSize);
  pointers_ = reinterpret_cast<const int64_t*>(p + kHeaderSize + 4 * n);
  doc_indices_ = reinterpret_cast<const int64_t*>(p + kHeaderSize + 12 * n);
  if (multimodal) modes_ = reinterpret_cast<const int8_t*>(p + kHeaderSize + 12 * n + 8 * d);

  // Document indices: 0, non-decreasing, ending at the sequence count.
  MCORE_CHECK(d >= 1) << where << ": document_count is 0 (field 'document_indices' must hold at "
                      << "least the leading 0)";
  MCORE_CHECK(doc_indices_[0] == 0)
      << where << ": document_indices[0] is " << doc_indices_[0] << ", expected 0";
  for (uint64_t i = 1; i < d; ++i)
    MCORE_CHECK(doc_indices_[i] >= doc_indices_[i - 1])
        << where << ": document_indices[" << i << "] = " << doc_indices_[i]
        << " is smaller than document_indices[" << i - 1 << "] = " << doc_indices_[i - 1]
        << " (field 'document_indices' must be non-decreasing)";
  MCORE_CHECK(doc_indices_[d - 1] == static_cast<int64_t>(n))
      << where << ": document_indices ends at " << doc_indices_[d - 1] << " but sequence_count is "
      << n << " (field 'document_indices')";

  // Lengths non-negative; pointers the running byte offsets.
  const int64_t itemsize = static_cast<int64_t>(dtype_size(dtype_));
  int64_t expect_ptr = 0;
  for (uint64_t i = 0; i < n; ++i) {
    const int32_t len = read_le<int32_t>(reinterpret_cast<const char*>(lengths_ + i));
    const int64_t ptr = read_le<int64_t>(reinterpret_cast<const char*>(pointers_ + i));
    MCORE_CHECK(len >= 0) << where << ": sequence_lengths[" << i << "] = " << len
                          << " is negative (field 'sequence_lengths')";
    MCORE_CHECK(ptr == expect_ptr)
        << where << ": sequence_pointers[" << i << "] = " << ptr << ", expected " << expect_ptr
        << " (field 'sequence_pointers' must be the running byte offset of the sequence "
           "lengths; pointers not monotonic or index corrupt)";
    expect_ptr += static_cast<int64_t>(len) * itemsize;
  }

  // The .bin must hold exactly the bytes the index describes.
  struct stat st;
  MCORE_CHECK(::stat(bin_path_.c_str(), &st) == 0)
      << "cannot stat '" << bin_path_ << "': " << errno_str();
  MCORE_CHECK(st.st_size == expect_ptr)
      << "'" << bin_path_ << "': file is " << st.st_size << " bytes but '" << idx_path_
      << "' describes " << expect_ptr << " bytes of " << dtype_
      << " tokens (field 'sequence_lengths'/.bin size; the .bin is truncated, or the .idx and "
         ".bin come from different datasets)";
  if (mmap_) {
    bin_ = std::make_unique<FileBuffer>(bin_path_, true);
  } else {
    bin_fd_ = ::open(bin_path_.c_str(), O_RDONLY | O_CLOEXEC);
    MCORE_CHECK(bin_fd_ >= 0) << "cannot open '" << bin_path_ << "': " << errno_str();
  }
}

IndexedDataset::~IndexedDataset() {
  if (bin_fd_ >= 0) ::close(bin_fd_);
}

bool IndexedDataset::exists(const std::string& path_prefix) {
  struct stat st;
  return ::stat(get_idx_path(path_prefix).c_str(), &st) == 0 &&
         ::stat(get_bin_path(path_prefix).c_str(), &st) == 0;
}

void IndexedDataset::check_range(int64_t idx, int64_t offset, int64_t length) const {
  MCORE_CHECK(idx >= 0 && idx < sequence_count_)
      << "indexed dataset '" << prefix_ << "': sequence index " << idx << " out of range [0, "
      << sequence_count_ << ")";
  const int64_t len = lengths_[idx];
  MCORE_CHECK(offset >= 0 && length >= 0 && offset + length <= len)
      << "indexed dataset '" << prefix_ << "': tokens [" << offset << ", " << offset + length
      << ") out of range for sequence " << idx << " of length " << len;
}

void IndexedDataset::read_bytes(int64_t byte_offset, int64_t nbytes, void* out) const {
  if (nbytes == 0) return;
  if (bin_) {
    std::memcpy(out, bin_->data() + byte_offset, static_cast<size_t>(nbytes));
    return;
  }
  int64_t done = 0;
  while (done < nbytes) {
    ssize_t r = ::pread(bin_fd_, static_cast<char*>(out) + done, static_cast<size_t>(nbytes - done),
                        static_cast<off_t>(byte_offset + done));
    MCORE_CHECK(r > 0) << "error reading '" << bin_path_ << "' at byte " << byte_offset + done
                       << ": " << (r == 0 ? "unexpected end of file" : errno_str());
    done += r;
  }
}

Tensor IndexedDataset::get(int64_t idx, int64_t offset, int64_t length) const {
  MCORE_CHECK(idx >= 0 && idx < sequence_count_)
      << "indexed dataset '" << prefix_ << "': sequence index " << idx << " out of range [0, "
      << sequence_count_ << ")";
  if (length < 0) length = lengths_[idx] - offset;
  check_range(idx, offset, length);
  Tensor t = empty({length}, dtype_);
  const int64_t itemsize = static_cast<int64_t>(dtype_size(dtype_));
  read_bytes(pointers_[idx] + offset * itemsize, length * itemsize, t.data_ptr());
  return t;
}

void IndexedDataset::read_tokens(int64_t idx, int64_t offset, int64_t length, int64_t* out) const {
  check_range(idx, offset, length);
  const int64_t itemsize = static_cast<int64_t>(dtype_size(dtype_));
  const int64_t start = pointers_[idx] + offset * itemsize;
  if (dtype_ == DType::I64) {
    read_bytes(start, length * itemsize, out);
    return;
  }
  const void* src;
  std::vector<char> tmp;
  if (bin_) {
    src = bin_->data() + start;
  } else {
    tmp.resize(static_cast<size_t>(length * itemsize));
    read_bytes(start, length * itemsize, tmp.data());
    src = tmp.data();
  }
  switch (dtype_) {
    case DType::U16: {
      const auto* s = static_cast<const uint16_t*>(src);
      for (int64_t i = 0; i < length; ++i) out[i] = s[i];
      return;
    }
    case DType::I32: {
      const auto* s = static_cast<const int32_t*>(src);
      for (int64_t i = 0; i < length; ++i) out[i] = s[i];
      return;
    }
    default:
      convert_any(src, dtype_, length, DType::I64, out);
  }
}

// ---------------------------------------------------------------------------------------------
// IndexedDatasetBuilder

IndexedDatasetBuilder::IndexedDatasetBuilder(const std::string& bin_path, DType dtype,
                                             bool multimodal)
    : bin_path_(bin_path), bin_tmp_(bin_path + ".tmp"), dtype_(dtype), multimodal_(multimodal) {
  code_from_dtype(dtype);  // validates the dtype
  bin_ = std::fopen(bin_tmp_.c_str(), "wb");
  MCORE_CHECK(bin_) << "cannot create '" << bin_tmp_ << "': " << errno_str();
  std::setvbuf(bin_, nullptr, _IOFBF, 1 << 20);
}

IndexedDatasetBuilder::~IndexedDatasetBuilder() {
  if (bin_) std::fclose(bin_);
  if (!finalized_) std::remove(bin_tmp_.c_str());
}

void IndexedDatasetBuilder::write_bin(const void* data, size_t nbytes) {
  MCORE_CHECK(bin_ && !finalized_) << "IndexedDatasetBuilder: write after finalize()";
  if (nbytes == 0) return;
  MCORE_CHECK(std::fwrite(data, 1, nbytes, bin_) == nbytes)
      << "error writing '" << bin_tmp_ << "': " << errno_str();
}

void IndexedDatasetBuilder::add_item_raw(const void* data, DType src_dtype, int64_t count,
                                         int8_t mode) {
  MCORE_CHECK(count >= 0 && count <= std::numeric_limits<int32_t>::max())
      << "IndexedDatasetBuilder: a sequence of " << count
      << " tokens does not fit the format's int32 length";
  const size_t nbytes = static_cast<size_t>(count) * dtype_size(dtype_);
  if (src_dtype == dtype_) {
    write_bin(data, nbytes);
  } else {
    convert_buf_.resize(nbytes);
    convert_any(data, src_dtype, count, dtype_, convert_buf_.data());
    write_bin(convert_buf_.data(), nbytes);
  }
  lengths_.push_back(static_cast<int32_t>(count));
  if (multimodal_) modes_.push_back(mode);
}

void IndexedDatasetBuilder::add_item(const Tensor& tokens, int8_t mode) {
  Tensor t = tokens.to(Device::cpu()).contiguous();
  add_item_raw(t.data_ptr(), t.dtype(), t.numel(), mode);
}

void IndexedDatasetBuilder::add_document(const Tensor& tokens, const std::vector<int64_t>& lengths,
                                         const std::vector<int8_t>& modes) {
  Tensor t = tokens.to(Device::cpu()).contiguous();
  int64_t total = 0;
  for (int64_t l : lengths) total += l;
  MCORE_CHECK(total == t.numel()) << "IndexedDatasetBuilder::add_document: lengths sum to " << total
                                  << " but the document has " << t.numel() << " tokens";
  MCORE_CHECK(modes.empty() || modes.size() == lengths.size())
      << "IndexedDatasetBuilder::add_document: " << modes.size() << " modes for " << lengths.size()
      << " sequences";
  const char* base = static_cast<const char*>(t.data_ptr());
  int64_t at = 0;
  for (size_t i = 0; i < lengths.size(); ++i) {
    add_item_raw(base + at * static_cast<int64_t>(t.element_size()), t.dtype(), lengths[i],
                 modes.empty() ? 0 : modes[i]);
    at += lengths[i];
  }
  end_document();
}

void IndexedDatasetBuilder::end_document() {
  doc_indices_.push_back(static_cast<int64_t>(lengths_.size()));
}

void IndexedDatasetBuilder::add_index(const std::string& path_prefix) {
  IndexedDataset other(path_prefix, multimodal_, true);
  MCORE_CHECK(other.dtype() == dtype_)
      << "IndexedDatasetBuilder::add_index: '" << path_prefix << "' holds " << other.dtype()
      << " tokens but this builder writes " << dtype_;
  const int64_t offset = static_cast<int64_t>(lengths_.size());
  const int64_t n = other.num_sequences();
  lengths_.insert(lengths_.end(), other.sequence_lengths(), other.sequence_lengths() + n);
  const int64_t* di = other.document_indices();
  for (int64_t i = 1; i < other.document_indices_size(); ++i)
    doc_indices_.push_back(offset + di[i]);
  if (multimodal_) modes_.insert(modes_.end(), other.sequence_modes(), other.sequence_modes() + n);
  // Copy the .bin in blocks (it was validated to be exactly the described size).
  FileBuffer bin(get_bin_path(path_prefix), true);
  write_bin(bin.data(), bin.size());
}

void IndexedDatasetBuilder::finalize(const std::string& idx_path) {
  MCORE_CHECK(!finalized_) << "IndexedDatasetBuilder::finalize called twice";
  MCORE_CHECK(std::fflush(bin_) == 0 && ::fsync(fileno(bin_)) == 0)
      << "error flushing '" << bin_tmp_ << "': " << errno_str();
  std::fclose(bin_);
  bin_ = nullptr;

  const std::string idx_tmp = idx_path + ".tmp";
  std::FILE* f = std::fopen(idx_tmp.c_str(), "wb");
  MCORE_CHECK(f) << "cannot create '" << idx_tmp << "': " << errno_str();
  const uint64_t n = lengths_.size(), d = doc_indices_.size(), version = 1;
  const uint8_t code = static_cast<uint8_t>(code_from_dtype(dtype_));
  std::vector<int64_t> pointers(n);
  const int64_t itemsize = static_cast<int64_t>(dtype_size(dtype_));
  int64_t ptr = 0;
  for (uint64_t i = 0; i < n; ++i) {
    pointers[i] = ptr;
    ptr += static_cast<int64_t>(lengths_[i]) * itemsize;
  }
  bool ok = std::fwrite(kMagic, 1, 9, f) == 9 && std::fwrite(&version, 8, 1, f) == 1 &&
            std::fwrite(&code, 1, 1, f) == 1 && std::fwrite(&n, 8, 1, f) == 1 &&
            std::fwrite(&d, 8, 1, f) == 1;
  ok = ok && (n == 0 || std::fwrite(lengths_.data(), 4, n, f) == n);
  ok = ok && (n == 0 || std::fwrite(pointers.data(), 8, n, f) == n);
  ok = ok && std::fwrite(doc_indices_.data(), 8, d, f) == d;
  if (multimodal_) ok = ok && (n == 0 || std::fwrite(modes_.data(), 1, n, f) == n);
  ok = ok && std::fflush(f) == 0 && ::fsync(fileno(f)) == 0;
  std::fclose(f);
  if (!ok) {
    std::remove(idx_tmp.c_str());
    MCORE_FAIL() << "error writing '" << idx_tmp << "': " << errno_str();
  }
  // Data first, index last: a reader that finds the .idx finds a complete .bin beside it.
  MCORE_CHECK(std::rename(bin_tmp_.c_str(), bin_path_.c_str()) == 0)
      << "cannot rename '" << bin_tmp_ << "' to '" << bin_path_ << "': " << errno_str();
  MCORE_CHECK(std::rename(idx_tmp.c_str(), idx_path.c_str()) == 0)
      << "cannot rename '" << idx_tmp << "' to '" << idx_path << "': " << errno_str();
  finalized_ = true;
}

}  // namespace mcore::datasets
