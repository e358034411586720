// Megatron's indexed dataset: PREFIX.idx (header, sequence lengths and byte pointers, document
// boundaries, optional per-sequence modes) plus PREFIX.bin (the tokens, concatenated). The
// reader maps both files (or reads the .bin with pread in plain-read mode) and validates every
// field on open, so a corrupt or mismatched pair fails with an error naming the file and the
// field instead of yielding garbage samples. The builder writes byte-identical files to
// megatron-core's IndexedDatasetBuilder, through temporary names renamed on finalize().
// See shared/FORMATS.md for the layout.
#pragma once

#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "mcore/base/dtype.h"
#include "mcore/datasets/low_level_dataset.h"
#include "mcore/tensor/tensor.h"

namespace mcore::datasets {

// Megatron's DType codes: 1 uint8, 2 int8, 3 int16, 4 int32, 5 int64, 6 float64, 7 float32,
// 8 uint16.
DType dtype_from_code(int code);   // throws on an unknown code
int code_from_dtype(DType dtype);  // throws for dtypes the format lacks
// DType.optimal_dtype: uint16 for vocabularies under 65500 tokens, else int32.
DType optimal_dtype(int64_t vocab_size);

std::string get_idx_path(const std::string& prefix);  // prefix + ".idx"
std::string get_bin_path(const std::string& prefix);  // prefix + ".bin"

// A read-only view of a whole file: mmap'd, or read into memory.
class FileBuffer {
 public:
  FileBuffer() = default;
  FileBuffer(const std::string& path, bool mmap);
  ~FileBuffer();
  FileBuffer(const FileBuffer&) = delete;
  FileBuffer& operator=(const FileBuffer&) = delete;
  const char* data() const { return data_; }
  size_t size() const { return size_; }

 private:
  const char* data_ = nullptr;
  size_t size_ = 0;
  void* map_ = nullptr;
  std::vector<char> owned_;
};

class IndexedDataset : public LowLevelDataset {
 public:
  // Opens PREFIX.idx / PREFIX.bin. `mmap` false reads tokens with pread (Megatron's
  // _FileBinReader) instead of mapping the .bin. `multimodal`: the .idx carries sequence modes.
  explicit IndexedDataset(const std::string& path_prefix, bool multimodal = false,
                          bool mmap = true);
  ~IndexedDataset() override;

  int64_t num_sequences() const override { return sequence_count_; }
  int64_t num_documents() const { return document_count_ - 1; }
  DType dtype() const { return dtype_; }
  bool multimodal() const { return multimodal_; }
  std::string path_prefix() const override { return prefix_; }

  const int32_t* sequence_lengths() const override { return lengths_; }
  const int64_t* sequence_pointers() const { return pointers_; }
  // num_documents() + 1 entries: 0, then the sequence count at each document end.
  const int64_t* document_indices() const { return doc_indices_; }
  int64_t document_indices_size() const { return document_count_; }
  const int8_t* sequence_modes() const { return modes_; }  // null unless multimodal

  // Megatron's IndexedDataset.get: tokens [offset, offset+length) of sequence idx in the file's
  // dtype (length < 0: to the end of the sequence).
  Tensor get(int64_t idx, int64_t offset = 0, int64_t length = -1) const;
  void read_tokens(int64_t idx, int64_t offset, int64_t length, int64_t* out) const override;

  static bool exists(const std::string& path_prefix);

 private:
  void check_range(int64_t idx, int64_t offset, int64_t length) const;
  void read_bytes(int64_t byte_offset, int64_t nbytes, void* out) const;

  std::string prefix_, idx_path_, bin_path_;
  bool multimodal_ = false, mmap_ = true;
  DType dtype_ = DType::I32;
  int64_t sequence_count_ = 0, document_count_ = 0;
  std::unique_ptr<FileBuffer> idx_;
  std::unique_ptr<FileBuffer> bin_;  // mmap mode
  int bin_fd_ = -1;                  // plain-read mode
  const int32_t* lengths_ = nullptr;
  const int64_t* pointers_ = nullptr;
  const int64_t* doc_indices_ = nullptr;
  const int8_t* modes_ = nullptr;
};

// Writes PREFIX.bin / PREFIX.idx like megatron-core's IndexedDatasetBuilder. Data goes to
// "<bin_path>.tmp" and the index to "<idx_path>.tmp"; finalize() renames both, so a crash
// leaves no half-written dataset under the real names.
class IndexedDatasetBuilder {
 public:
  explicit IndexedDatasetBuilder(const std::string& bin_path, DType dtype = DType::I32,
                                 bool multimodal = false);
  ~IndexedDatasetBuilder();  // removes the temporary files if finalize() was not reached
  IndexedDatasetBuilder(const IndexedDatasetBuilder&) = delete;
  IndexedDatasetBuilder& operator=(const IndexedDatasetBuilder&) = delete;

  // One sequence; values are converted to the dataset dtype (integers must fit it).
  void add_item(const Tensor& tokens, int8_t mode = 0);
  template <class T>
  void add_item(const std::vector<T>& tokens, int8_t mode = 0) {
    add_item_raw(tokens.data(), dtype_of<T>, static_cast<int64_t>(tokens.size()), mode);
  }
  void add_item_raw(const void* data, DType src_dtype, int64_t count, int8_t mode = 0);
  // A whole document: `tokens` concatenates its sequences of the given lengths.
  void add_document(const Tensor& tokens, const std::vector<int64_t>& lengths,
                    const std::vector<int8_t>& modes = {});
  // Closes the current document (after add_item calls).
  void end_document();
  // Appends a whole existing dataset (same dtype), its documents included.
  void add_index(const std::string& path_prefix);
  // Writes the .idx and moves both files to their final names.
  void finalize(const std::string& idx_path);

  DType dtype() const { return dtype_; }
  int64_t num_sequences() const { return static_cast<int64_t>(lengths_.size()); }

 private:
  void write_bin(const void* data, size_t nbytes);

  std::string bin_path_, bin_tmp_;
  DType dtype_;
  bool multimodal_;
  std::FILE* bin_ = nullptr;
  bool finalized_ = false;
  std::vector<int32_t> lengths_;
  std::vector<int64_t> doc_indices_{0};
  std::vector<int8_t> modes_;
  std::vector<char> convert_buf_;
};

}  // namespace mcore::datasets
