// safetensors reader/writer: round trips of every dtype, byte-for-byte agreement with files the
// `safetensors` package writes (tests/reference/gen_safetensors.py), the package reading ours
// (read_safetensors.py), and clear errors for every kind of broken file.
#include "mcore/dist_checkpointing/safetensors.h"

#include <gtest/gtest.h>

#include <cstring>
#include <nlohmann/json.hpp>

#include "mcore/tensor/factory.h"
#include "tests/common/test_util.h"
#include "tests/dist_checkpointing/ckpt_test_util.h"

namespace mcore::testing {
namespace {

using dist_checkpointing::load_safetensors;
using dist_checkpointing::safetensors_dtype_name;
using dist_checkpointing::SafetensorsReader;
using dist_checkpointing::save_safetensors;
using json = nlohmann::json;

const DType kAllDTypes[] = {DType::F64,    DType::F32, DType::BF16, DType::F16, DType::F8E4M3,
                            DType::F8E5M2, DType::I64, DType::I32,  DType::I16, DType::I8,
                            DType::U16,    DType::U8,  DType::BOOL};

// Values every dtype represents exactly, so a conversion bug cannot hide behind rounding.
Tensor test_tensor(DType d, const Shape& shape, int salt) {
  Tensor t = empty(shape, DType::F64);
  double* p = t.data<double>();
  for (int64_t i = 0; i < t.numel(); ++i) {
    const int64_t k = (i * 7 + salt * 3) % 11;
    if (d == DType::BOOL) {
      p[i] = k % 2;
    } else if (d == DType::U8 || d == DType::U16) {
      p[i] = static_cast<double>(k * 11);
    } else if (d == DType::I64) {
      p[i] = static_cast<double>((int64_t(1) << 40) * (k - 5) + i);
    } else if (is_floating(d)) {
      p[i] = (k - 5) * 0.5;
    } else {
      p[i] = static_cast<double>(k - 5);
    }
  }
  return t.to(d);
}

std::string bytes_of(const Tensor& t) {
  Tensor c = t.contiguous();
  return std::string(static_cast<const char*>(c.data_ptr()), c.nbytes());
}

std::string hex(const std::string& s) {
  static const char* d = "0123456789abcdef";
  std::string out;
  for (unsigned char c : s) {
    out += d[c >> 4];
    out += d[c & 15];
  }
  return out;
}

std::map<std::string, Tensor> all_dtype_tensors() {
  std::map<std::string, Tensor> m;
  int salt = 0;
  for (DType d : kAllDTypes) {
    m[std::string("w.") + safetensors_dtype_name(d)] = test_tensor(d, {3, 5}, salt++);
  }
  m["odd"] = test_tensor(DType::F32, {7, 1, 3}, 9);
  m["scalar"] = full({}, 1.25, DType::F32);
  m["empty"] = empty({0, 4}, DType::BF16);
  return m;
}

TEST(Safetensors, RoundTripEveryDtype) {
  ScratchDir dir("st_roundtrip");
  auto tensors = all_dtype_tensors();
  // A non-contiguous input is written as its logical contents.
  Tensor base = test_tensor(DType::F32, {4, 6}, 3);
  tensors["transposed"] = base.transpose(0, 1);
  const std::string path = (dir / "a.safetensors").string();
  auto w = save_safetensors(path, tensors, {{"format", "pt"}, {"note", "a \"quoted\" value"}});
  EXPECT_EQ(w.bytes, fs::file_size(path));
  SafetensorsReader r(path);
  EXPECT_EQ(r.metadata().at("note"), "a \"quoted\" value");
  EXPECT_EQ(r.entries().size(), tensors.size());
  for (const auto& [name, t] : tensors) {
    SCOPED_TRACE(name);
    Tensor got = r.load(name);
    EXPECT_EQ(got.dtype(), t.dtype());
    EXPECT_EQ(got.shape(), t.shape());
    EXPECT_EQ(bytes_of(got), bytes_of(t));
    EXPECT_EQ(bytes_of(r.view(name)), bytes_of(t));
  }
  // Data are aligned: every offset is a multiple of its element size (widest dtypes first).
  for (const auto& e : r.entries()) EXPECT_EQ(e.begin % dtype_size(e.dtype), 0u) << e.name;
  // Views are writable copy-on-write: the file does not change.
  const std::string before = read_bytes(path);
  Tensor v = r.view("w.F32");
  v.fill_(42.0);
  EXPECT_EQ(read_bytes(path), before);
  EXPECT_TENSOR_CLOSE(load_safetensors(path).at("w.F32"), tensors.at("w.F32"), 0, 0);
  EXPECT_EQ(to_vector<double>(v)[0], 42.0);
}

TEST(Safetensors, ReadsFileWrittenBySafetensorsPackage) {
  const std::string dir = ref_dir() + "/safetensors";
  ASSERT_TRUE(fs::exists(dir + "/manifest.json"))
      << dir << "/manifest.json is missing: run the reference_data CTest fixture";
  const json manifest = json::parse(read_bytes(dir + "/manifest.json"));
  SafetensorsReader r(dir + "/py_written.safetensors");
  EXPECT_EQ(r.metadata().at("format"), "pt");
  EXPECT_EQ(r.entries().size(), manifest.size());
  for (auto it = manifest.begin(); it != manifest.end(); ++it) {
    const std::string name = it.key();
    SCOPED_TRACE(name);
    Tensor t = r.load(name);
    EXPECT_EQ(safetensors_dtype_name(t.dtype()), it.value()["dtype"].get<std::string>());
    EXPECT_EQ(t.shape(), it.value()["shape"].get<Shape>());
    Tensor want_bytes = load_ref("safetensors", name + "_bytes");
    EXPECT_EQ(hex(bytes_of(t)), hex(bytes_of(want_bytes)));
    // Decoded values agree with ml_dtypes/numpy (bf16 and fp8 decoding included), exactly.
    if (t.numel() > 0) {
      EXPECT_TENSOR_CLOSE(t.to(DType::F64).reshape({t.numel()}),
                          load_ref("safetensors", name + "_values"), 0, 0);
    }
  }
}

TEST(Safetensors, WritesTheSameBytesAsSafetensorsPackage) {
  const std::string path = ref_dir() + "/safetensors/py_written.safetensors";
  ASSERT_TRUE(fs::exists(path)) << path << " is missing: run the reference_data CTest fixture";
  ScratchDir dir("st_bytes");
  auto tensors = load_safetensors(path);
  const std::string ours = (dir / "ours.safetensors").string();
  save_safetensors(ours, tensors, {{"format", "pt"}});
  const std::string a = read_bytes(ours), b = read_bytes(path);
  EXPECT_EQ(a.size(), b.size());
  EXPECT_TRUE(a == b) << "header ours: " << a.substr(8, 200)
                      << "\nheader package: " << b.substr(8, 200);
}

TEST(Safetensors, SafetensorsPackageReadsOurFile) {
  ScratchDir dir("st_pkg");
  auto tensors = all_dtype_tensors();
  const std::string path = (dir / "ours.safetensors").string();
  save_safetensors(path, tensors, {{"format", "pt"}, {"producer", "mcore"}});
  const fs::path script = fs::path(__FILE__).parent_path() / "read_safetensors.py";
  const std::string out_json = (dir / "seen.json").string();
  std::string out;
  const int rc =
      run_command(python_executable() + " " + script.string() + " " + path + " " + out_json, &out);
  ASSERT_NE(rc, 77) << "the safetensors package is not installed (scripts/setup installs it): "
                    << out;
  ASSERT_EQ(rc, 0) << out;
  const json seen = json::parse(read_bytes(out_json));
  EXPECT_EQ(seen["metadata"]["producer"], "mcore");
  EXPECT_EQ(seen["tensors"].size(), tensors.size());
  for (const auto& [name, t] : tensors) {
    SCOPED_TRACE(name);
    ASSERT_TRUE(seen["tensors"].contains(name));
    const json& s = seen["tensors"][name];
    EXPECT_EQ(s["dtype"].get<std::string>(), safetensors_dtype_name(t.dtype()));
    EXPECT_EQ(s["shape"].get<Shape>(), t.shape());
    EXPECT_EQ(s["hex"].get<std::string>(), hex(bytes_of(t)));
    if (s.contains("values")) {  // torch's reading of the values, for the dtypes it has
      EXPECT_EQ(s["values"].get<std::vector<double>>(), to_vector<double>(t));
    }
  }
}

// ---- broken files ----

// A file from a raw header and `data_bytes` zero bytes of data.
std::string make_file(const ScratchDir& dir, const std::string& header, size_t data_bytes,
                      const std::string& name = "bad.safetensors") {
  const std::string path = (dir / name).string();
  std::string s(8, '\0');
  const uint64_t n = header.size();
  std::memcpy(s.data(), &n, 8);
  s += header;
  s.append(data_bytes, '\0');
  write_bytes(path, s);
  return path;
}

TEST(Safetensors, BrokenFilesGiveErrorsNamingFileAndTensor) {
  ScratchDir dir("st_bad");
  const std::string ok = R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
  EXPECT_NO_THROW(SafetensorsReader(make_file(dir, ok, 8)));

  expect_error([&] { SafetensorsReader((dir / "nope.safetensors").string()); },
               {"nope.safetensors", "cannot open"});
  const std::string tiny = (dir / "tiny.safetensors").string();
  write_bytes(tiny, "abc");
  expect_error([&] { SafetensorsReader r(tiny); }, {tiny, "truncated"});
  // Header length beyond the end of the file.
  const std::string cut = make_file(dir, ok, 8, "cut.safetensors");
  truncate_file(cut, 20);
  expect_error([&] { SafetensorsReader r(cut); }, {cut, "truncated"});
  // Data cut short: offsets out of range.
  const std::string short_data = make_file(dir, ok, 5, "short.safetensors");
  expect_error([&] { SafetensorsReader r(short_data); }, {short_data, "\"a\"", "out of range"});
  // Implausible header length (random bytes).
  const std::string garbage = (dir / "garbage.safetensors").string();
  write_bytes(garbage, std::string("\xff\xff\xff\xff\xff\xff\xff\x7f", 8) + "xxxxxxxx");
  expect_error([&] { SafetensorsReader r(garbage); }, {garbage, "implausible"});
  expect_error([&] { SafetensorsReader r(make_file(dir, "[1, 2]  ", 0)); },
               {"bad.safetensors", "does not start with '{'"});
  expect_error([&] { SafetensorsReader r(make_file(dir, R"({"a": {"dtype": )", 0)); },
               {"bad.safetensors", "not valid JSON"});
  expect_error(
      [&] {
        SafetensorsReader r(
            make_file(dir, R"({"a":{"dtype":"F33","shape":[2],"data_offsets":[0,8]}})", 8));
      },
      {"bad.safetensors", "\"a\"", "F33", "BF16"});
  expect_error(
      [&] {
        SafetensorsReader r(
            make_file(dir, R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", 8));
      },
      {"\"a\"", "8 data bytes do not match shape [3]"});
  expect_error(
      [&] {
        SafetensorsReader r(
            make_file(dir, R"({"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", 8));
      },
      {"\"a\"", "non-negative"});
  expect_error(
      [&] { SafetensorsReader r(make_file(dir, R"({"a":{"dtype":"F32","shape":[2]}})", 8)); },
      {"\"a\"", "data_offsets"});
  expect_error(
      [&] {
        SafetensorsReader r(make_file(
            dir,
            R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
            12));
      },
      {"\"b\"", "overlaps"});
  expect_error(
      [&] {
        SafetensorsReader r(
            make_file(dir, R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})", 12));
      },
      {"gap of 4 bytes", "\"a\""});
  expect_error([&] { SafetensorsReader r(make_file(dir, ok, 12)); },
               {"bad.safetensors", "trailing"});
  expect_error(
      [&] {
        SafetensorsReader r(make_file(
            dir, R"({"__metadata__":{"k":1},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})",
            8));
      },
      {"__metadata__", "\"k\""});
  SafetensorsReader good(make_file(dir, ok, 8, "good.safetensors"));
  expect_error([&] { good.load("b"); }, {"good.safetensors", "no tensor \"b\""});
}

TEST(Safetensors, WriterRejectsBadInput) {
  ScratchDir dir("st_wbad");
  const std::string p = (dir / "w.safetensors").string();
  std::vector<std::pair<std::string, Tensor>> dup{{"a", zeros({2})}, {"a", zeros({3})}};
  expect_error([&] { save_safetensors(p, dup); }, {"\"a\"", "twice"});
  expect_error([&] { save_safetensors(p, {{"__metadata__", zeros({1})}}); }, {"__metadata__"});
  expect_error([&] { save_safetensors(p, {{"", zeros({1})}}); }, {"invalid tensor name"});
  const std::string unwritable = (dir / "missing_dir" / "x.safetensors").string();
  expect_error(
      [&] {
        save_safetensors(unwritable, {{"a", zeros({1})}});
      },
      {unwritable, "cannot create"});
}

}  // namespace
}  // namespace mcore::testing
