// IndexedDataset / IndexedDatasetBuilder: files written by megatron-core open here with the
// same values and are rewritten byte for byte (reference: gen_indexed_dataset.py); round trips
// for every dtype; every corruption of .idx/.bin gives an mcore::Error naming file and field.
#include <gtest/gtest.h>

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <iterator>

#include "mcore/datasets/indexed_dataset.h"
#include "tests/common/test_util.h"

namespace mcore::datasets {
namespace {

namespace fs = std::filesystem;
using mcore::testing::has_ref;
using mcore::testing::load_ref;
using mcore::testing::ref_dir;

std::string slurp(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}
void spit(const std::string& path, const std::string& data) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(data.data(), static_cast<std::streamsize>(data.size()));
}

fs::path temp_dir(const std::string& name) {
  fs::path d = fs::temp_directory_path() / ("mcore_ds_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

// Expect construction to throw an Error whose message contains every one of `parts`.
template <class F>
void expect_error(F&& f, std::initializer_list<std::string> parts) {
  try {
    f();
    ADD_FAILURE() << "no error thrown";
  } catch (const Error& e) {
    for (const auto& p : parts)
      EXPECT_NE(e.message().find(p), std::string::npos) << "'" << p << "' not in: " << e.message();
  }
}

const char* kDtypeNames[] = {"uint8", "int8",    "int16",   "int32",
                             "int64", "float64", "float32", "uint16"};

TEST(IndexedDataset, ReadsMegatronFilesEveryDtypeAndRewritesThemByteForByte) {
  if (!has_ref("indexed_dataset", "int32_values")) FAIL() << "reference data missing: the reference_data CTest fixture must run first";
  const fs::path out = temp_dir("rewrite");
  for (const char* name : kDtypeNames) {
    const std::string prefix = ref_dir() + "/indexed_dataset/" + name;
    const std::vector<double> values =
        to_vector<double>(load_ref("indexed_dataset", std::string(name) + "_values"));
    const std::vector<int64_t> lengths =
        to_vector<int64_t>(load_ref("indexed_dataset", std::string(name) + "_lengths"));
    const std::vector<int64_t> docs =
        to_vector<int64_t>(load_ref("indexed_dataset", std::string(name) + "_docs"));
    for (bool mmap : {true, false}) {
      IndexedDataset ds(prefix, false, mmap);
      EXPECT_EQ(ds.dtype(), dtype_from_name(name)) << name;
      ASSERT_EQ(ds.num_sequences(), static_cast<int64_t>(lengths.size())) << name;
      ASSERT_EQ(ds.num_documents() + 1, static_cast<int64_t>(docs.size())) << name;
      for (size_t i = 0; i < docs.size(); ++i) EXPECT_EQ(ds.document_indices()[i], docs[i]);
      std::vector<double> got;
      for (int64_t i = 0; i < ds.num_sequences(); ++i) {
        EXPECT_EQ(ds.sequence_lengths()[i], lengths[i]);
        std::vector<double> v = to_vector<double>(ds.get(i));
        got.insert(got.end(), v.begin(), v.end());
      }
      EXPECT_EQ(got, values) << name << (mmap ? " mmap" : " pread");
    }
    // Rewrite with mcore's builder, sequence by sequence: identical bytes.
    IndexedDataset ds(prefix);
    const std::string dst = (out / name).string();
    {
      IndexedDatasetBuilder b(get_bin_path(dst), ds.dtype());
      int64_t d = 1;
      for (int64_t i = 0; i < ds.num_sequences(); ++i) {
        b.add_item(ds.get(i));
        while (d < ds.document_indices_size() && ds.document_indices()[d] == i + 1) {
          b.end_document();
          ++d;
        }
      }
      b.finalize(get_idx_path(dst));
    }
    EXPECT_EQ(slurp(get_idx_path(dst)), slurp(get_idx_path(prefix))) << name << " .idx";
    EXPECT_EQ(slurp(get_bin_path(dst)), slurp(get_bin_path(prefix))) << name << " .bin";
  }
  fs::remove_all(out);
}

TEST(IndexedDataset, MultimodalAndAddIndexMatchMegatron) {
  if (!has_ref("indexed_dataset", "int32_values")) FAIL() << "reference data missing: the reference_data CTest fixture must run first";
  const std::string root = ref_dir() + "/indexed_dataset/";
  IndexedDataset mm(root + "multimodal", true);
  ASSERT_EQ(mm.num_sequences(), 5);
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ(mm.sequence_modes()[i], i % 3);
    EXPECT_EQ(to_vector<int64_t>(mm.get(i)).size(), static_cast<size_t>(i + 1));
  }
  // Opened without multimodal the trailing modes are named as the likely cause.
  expect_error([&] { IndexedDataset bad(root + "multimodal", false); },
               {"multimodal.idx", "sequence modes"});

  const fs::path out = temp_dir("merge");
  const std::string dst = (out / "merged").string();
  {
    IndexedDatasetBuilder b(get_bin_path(dst), DType::I32);
    b.add_index(root + "int32");
    b.add_item(std::vector<int64_t>{7, 8, 9});
    b.end_document();
    b.add_index(root + "int32");
    b.finalize(get_idx_path(dst));
  }
  EXPECT_EQ(slurp(get_idx_path(dst)), slurp(root + "merged.idx"));
  EXPECT_EQ(slurp(get_bin_path(dst)), slurp(root + "merged.bin"));
  {
    IndexedDatasetBuilder b((out / "mm.bin").string(), DType::I32, true);
    for (int i = 0; i < 5; ++i) {
      std::vector<int32_t> v(static_cast<size_t>(i + 1));
      for (int j = 0; j <= i; ++j) v[j] = j;
      b.add_item(v, static_cast<int8_t>(i % 3));
      if (i % 2) b.end_document();
    }
    b.end_document();
    b.finalize((out / "mm.idx").string());
  }
  EXPECT_EQ(slurp((out / "mm.idx").string()), slurp(root + "multimodal.idx"));
  EXPECT_EQ(slurp((out / "mm.bin").string()), slurp(root + "multimodal.bin"));
  fs::remove_all(out);
}

TEST(IndexedDataset, RoundTripEveryDtypeWithOffsets) {
  const fs::path out = temp_dir("roundtrip");
  for (const char* name : kDtypeNames) {
    const DType dt = dtype_from_name(name);
    const std::string prefix = (out / name).string();
    std::vector<std::vector<int64_t>> seqs = {{1, 2, 3}, {}, {4}, {5, 6, 7, 8, 9, 10, 11}};
    {
      IndexedDatasetBuilder b(get_bin_path(prefix), dt);
      for (size_t i = 0; i < seqs.size(); ++i) {
        b.add_item(seqs[i]);
        if (i % 2) b.end_document();
      }
      b.finalize(get_idx_path(prefix));
    }
    EXPECT_EQ(code_from_dtype(dt), code_from_dtype(dtype_from_code(code_from_dtype(dt))));
    for (bool mmap : {true, false}) {
      IndexedDataset ds(prefix, false, mmap);
      ASSERT_EQ(ds.dtype(), dt);
      ASSERT_EQ(ds.num_sequences(), 4);
      EXPECT_EQ(ds.num_documents(), 2);
      for (size_t i = 0; i < seqs.size(); ++i) EXPECT_EQ(to_vector<int64_t>(ds.get(i)), seqs[i]);
      // get(idx, offset, length) and read_tokens widen to int64.
      EXPECT_EQ(to_vector<int64_t>(ds.get(3, 2, 3)), (std::vector<int64_t>{7, 8, 9}));
      EXPECT_EQ(to_vector<int64_t>(ds.get(3, 5)), (std::vector<int64_t>{10, 11}));
      std::vector<int64_t> buf(4);
      ds.read_tokens(3, 1, 4, buf.data());
      EXPECT_EQ(buf, (std::vector<int64_t>{6, 7, 8, 9}));
      EXPECT_THROW(ds.get(4), Error);
      EXPECT_THROW(ds.get(0, 2, 2), Error);
    }
  }
  fs::remove_all(out);
}

TEST(IndexedDataset, BuilderRejectsValuesTheDtypeCannotHoldAndIsAtomic) {
  const fs::path out = temp_dir("atomic");
  const std::string prefix = (out / "d").string();
  {
    IndexedDatasetBuilder b(get_bin_path(prefix), DType::U16);
    expect_error([&] { b.add_item(std::vector<int64_t>{1, 70000}); }, {"70000", "uint16"});
    b.add_item(std::vector<int64_t>{1, 2});
    // Not finalized: nothing under the real names, and the temporary is removed.
  }
  EXPECT_FALSE(fs::exists(get_bin_path(prefix)));
  EXPECT_FALSE(fs::exists(get_idx_path(prefix)));
  EXPECT_TRUE(fs::is_empty(out));
  EXPECT_EQ(optimal_dtype(50257), DType::U16);
  EXPECT_EQ(optimal_dtype(65500), DType::I32);
  EXPECT_THROW(IndexedDatasetBuilder(get_bin_path(prefix), DType::BF16), Error);
  fs::remove_all(out);
}

class IndexedDatasetCorruption : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = temp_dir("corrupt");
    good_ = (dir_ / "good").string();
    IndexedDatasetBuilder b(get_bin_path(good_), DType::I32);
    b.add_item(std::vector<int32_t>{1, 2, 3});
    b.add_item(std::vector<int32_t>{4, 5});
    b.end_document();
    b.add_item(std::vector<int32_t>{6});
    b.end_document();
    b.finalize(get_idx_path(good_));
    idx_ = slurp(get_idx_path(good_));
    bin_ = slurp(get_bin_path(good_));
  }
  void TearDown() override { fs::remove_all(dir_); }
  // Writes a variant (idx bytes, bin bytes) and expects opening it to fail naming `parts`.
  void expect_bad(const std::string& idx, const std::string& bin,
                  std::initializer_list<std::string> parts) {
    const std::string p = (dir_ / "bad").string();
    spit(get_idx_path(p), idx);
    spit(get_bin_path(p), bin);
    expect_error([&] { IndexedDataset ds(p); }, parts);
    expect_error([&] { IndexedDataset ds(p, false, false); }, parts);
  }
  template <class T>
  std::string patched(size_t offset, T value) {
    std::string s = idx_;
    std::memcpy(s.data() + offset, &value, sizeof(T));
    return s;
  }
  fs::path dir_;
  std::string good_, idx_, bin_;
};

// Layout: header 34, lengths 3x4 at 34, pointers 3x8 at 46, doc indices 3x8 at 70, end 94.
TEST_F(IndexedDatasetCorruption, GoodFileOpens) {
  ASSERT_EQ(idx_.size(), 94u);
  IndexedDataset ds(good_);
  EXPECT_EQ(to_vector<int64_t>(ds.get(2)), std::vector<int64_t>{6});
}

TEST_F(IndexedDatasetCorruption, HeaderFields) {
  expect_bad(idx_.substr(0, 20), bin_, {"bad.idx", "header", "truncated"});
  std::string bad_magic = idx_;
  bad_magic[0] = bad_magic[1] = 'X';
  expect_bad(bad_magic, bin_, {"bad.idx", "magic"});
  expect_bad(patched<uint64_t>(9, 2), bin_, {"bad.idx", "version", "2"});
  expect_bad(patched<uint8_t>(17, 9), bin_, {"bad.idx", "dtype", "9"});
  expect_bad(patched<uint8_t>(17, 0), bin_, {"bad.idx", "dtype", "0"});
  expect_bad(patched<uint64_t>(18, uint64_t{1} << 60), bin_, {"bad.idx", "sequence_count"});
  expect_bad(patched<uint64_t>(26, 1000), bin_, {"bad.idx", "document_count"});
  expect_bad(patched<uint64_t>(18, 2), bin_, {"bad.idx", "sequence_count"});
}

TEST_F(IndexedDatasetCorruption, TruncatedArrays) {
  expect_bad(idx_.substr(0, 60), bin_, {"bad.idx"});
  expect_bad(idx_.substr(0, 93), bin_, {"bad.idx", "document_count"});
  expect_bad(idx_ + "xyz", bin_, {"bad.idx", "implies"});
}

TEST_F(IndexedDatasetCorruption, LengthsPointersAndDocuments) {
  expect_bad(patched<int32_t>(34, -1), bin_, {"bad.idx", "sequence_lengths[0]"});
  expect_bad(patched<int64_t>(46 + 8, 4), bin_, {"bad.idx", "sequence_pointers[1]"});
  expect_bad(patched<int64_t>(46 + 16, 0), bin_, {"bad.idx", "sequence_pointers[2]"});
  expect_bad(patched<int64_t>(70, 1), bin_, {"bad.idx", "document_indices[0]"});
  expect_bad(patched<int64_t>(78, 4), bin_, {"bad.idx", "document_indices[2]", "non-decreasing"});
  expect_bad(patched<int64_t>(86, 2), bin_, {"bad.idx", "document_indices", "sequence_count"});
  // A longer first sequence: pointers no longer match and the .bin is too short.
  expect_bad(patched<int32_t>(34, 4), bin_, {"bad.idx", "sequence_pointers[1]"});
}

TEST_F(IndexedDatasetCorruption, BinSize) {
  expect_bad(idx_, bin_.substr(0, bin_.size() - 4), {"bad.bin", "20 bytes", "24 bytes"});
  expect_bad(idx_, bin_ + "1234", {"bad.bin", "28 bytes"});
  const std::string p = (dir_ / "nobin").string();
  spit(get_idx_path(p), idx_);
  expect_error([&] { IndexedDataset ds(p); }, {"nobin", "not found"});
}

}  // namespace
}  // namespace mcore::datasets
