// safetensors files (Hugging Face's format): an 8-byte little-endian header length, a JSON
// header {"name": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, ...,
// "__metadata__": {str: str}}, then the raw little-endian tensor data. mcore's checkpoint shards
// and Hugging Face model import/export use it.
//
// The writer produces the bytes the `safetensors` package writes for the same tensors (tensors
// ordered by dtype, widest first, then by name; header padded with spaces to 8 bytes), so data
// stays aligned for zero-copy views. The reader validates everything before trusting it (header
// length, JSON, dtype names, offsets in range, contiguous and non-overlapping, sizes equal to
// numel * itemsize) and names the file and the tensor in every error.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "mcore/base/file_io.h"
#include "mcore/tensor/tensor.h"

namespace mcore::dist_checkpointing {

// "F32", "BF16", "F8_E4M3", ... and back; the reverse errors listing the supported names.
const char* safetensors_dtype_name(DType dtype);
DType dtype_from_safetensors_name(const std::string& name);

struct SafetensorsEntry {
  std::string name;
  DType dtype = DType::F32;
  Shape shape;
  uint64_t begin = 0;  // byte offsets into the data section (after the header)
  uint64_t end = 0;
};

class SafetensorsReader {
 public:
  explicit SafetensorsReader(const std::string& path);
  // Over a file already mapped (the checkpoint loader maps once, checks the CRC, then parses).
  explicit SafetensorsReader(std::shared_ptr<MappedFile> file);

  const std::string& path() const { return file_->path(); }
  // In data order.
  const std::vector<SafetensorsEntry>& entries() const { return entries_; }
  bool contains(const std::string& name) const { return index_.count(name) != 0; }
  const SafetensorsEntry& entry(const std::string& name) const;
  const std::map<std::string, std::string>& metadata() const { return metadata_; }

  // A tensor over the file's bytes without a copy (writable copy-on-write; the file never
  // changes). Falls back to a copy when the data is not aligned to the element size.
  Tensor view(const std::string& name) const;
  // A fresh tensor holding a copy.
  Tensor load(const std::string& name) const;
  std::map<std::string, Tensor> load_all() const;

 private:
  void parse();
  std::shared_ptr<MappedFile> file_;
  uint64_t data_start_ = 0;
  std::vector<SafetensorsEntry> entries_;
  std::map<std::string, size_t> index_;
  std::map<std::string, std::string> metadata_;
};

struct SafetensorsWriteResult {
  uint64_t bytes = 0;   // file size
  uint32_t crc32c = 0;  // CRC-32C of the whole file
};

// Writes `tensors` (any device, any layout; names unique, not "__metadata__") to `path` and
// fsyncs it when `sync`. Not atomic by itself: callers write under a temporary name.
SafetensorsWriteResult save_safetensors(const std::string& path,
                                        const std::vector<std::pair<std::string, Tensor>>& tensors,
                                        const std::map<std::string, std::string>& metadata = {},
                                        bool sync = true);
// From a map (a template only so that a braced list picks the overload above unambiguously).
template <class Compare>
SafetensorsWriteResult save_safetensors(const std::string& path,
                                        const std::map<std::string, Tensor, Compare>& tensors,
                                        const std::map<std::string, std::string>& metadata = {},
                                        bool sync = true) {
  return save_safetensors(
      path, std::vector<std::pair<std::string, Tensor>>(tensors.begin(), tensors.end()), metadata,
      sync);
}
std::map<std::string, Tensor> load_safetensors(const std::string& path);

}  // namespace mcore::dist_checkpointing
