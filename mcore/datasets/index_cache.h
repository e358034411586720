// Megatron's dataset index caches: 1-d/2-d integer arrays in NumPy .npy files (int16, int32,
// int64 and uint32 — mcore's DType has no uint32, hence this reader/writer beside
// mcore/tensor/npy.h), plus the description text whose MD5 names them. Writes are atomic
// (temporary name + rename) so concurrent ranks and crashes never leave a half-written cache;
// reads validate the header and size and report a corrupt file as an mcore::Error.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace mcore::datasets {

// An integer .npy array, widened to int64. `descr` is NumPy's type string ("<i4", "<u4", ...).
struct IndexArray {
  std::string descr;
  std::vector<int64_t> shape;
  std::vector<int64_t> values;
};

// Writes `values` (shape `shape`) as a .npy of type `descr` ("<i2", "<i4", "<i8", "<u4").
void save_index_npy(const std::string& path, const std::string& descr,
                    const std::vector<int64_t>& shape, const std::vector<int64_t>& values);
IndexArray load_index_npy(const std::string& path);

// Whole-file text I/O for description.txt (atomic write).
void write_text_atomic(const std::string& path, const std::string& text);
bool read_text(const std::string& path, std::string* text);

bool file_exists(const std::string& path);
void make_dirs(const std::string& path);

}  // namespace mcore::datasets
