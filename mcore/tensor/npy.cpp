#include "mcore/tensor/npy.h"

#include <cstdio>
#include <cstring>
#include <fstream>
#include <regex>
#include <vector>

#include "mcore/tensor/factory.h"

namespace mcore {

namespace {

struct DescrMap {
  const char* descr;
  DType dtype;
};
constexpr DescrMap kDescr[] = {
    {"<f8", DType::F64}, {"<f4", DType::F32},  {"<f2", DType::F16}, {"<i8", DType::I64},
    {"<i4", DType::I32}, {"<i2", DType::I16},  {"|i1", DType::I8},  {"<u2", DType::U16},
    {"|u1", DType::U8},  {"|b1", DType::BOOL},
};

const char* descr_for(DType d) {
  if (d == DType::BF16) d = DType::U16;
  if (d == DType::F8E4M3 || d == DType::F8E5M2) d = DType::U8;
  for (const auto& m : kDescr)
    if (m.dtype == d) return m.descr;
  MCORE_FAIL() << "save_npy: no NumPy type for " << d;
  throw 0;
}

}  // namespace

Tensor load_npy(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  MCORE_CHECK(f) << "cannot open .npy file '" << path << "'";
  char magic[8];
  f.read(magic, 8);
  MCORE_CHECK(f && std::memcmp(magic, "\x93NUMPY", 6) == 0)
      << "'" << path << "' is not a .npy file (bad magic)";
  const int major = static_cast<unsigned char>(magic[6]);
  uint32_t header_len = 0;
  if (major == 1) {
    uint16_t h;
    f.read(reinterpret_cast<char*>(&h), 2);
    header_len = h;
  } else {
    MCORE_CHECK(major == 2 || major == 3) << "'" << path << "': unsupported .npy version " << major;
    f.read(reinterpret_cast<char*>(&header_len), 4);
  }
  std::string header(header_len, '\0');
  f.read(header.data(), header_len);
  MCORE_CHECK(f) << "'" << path << "': truncated .npy header";

  std::smatch m;
  MCORE_CHECK(std::regex_search(header, m, std::regex("'descr':\\s*'([^']+)'")))
      << "'" << path << "': .npy header has no descr";
  std::string descr = m[1];
  if (descr == "=f8" || descr == "f8") descr = "<f8";
  DType dtype = DType::F32;
  bool found = false;
  for (const auto& d : kDescr) {
    if (descr == d.descr) {
      dtype = d.dtype;
      found = true;
    }
  }
  MCORE_CHECK(found) << "'" << path << "': unsupported .npy dtype '" << descr << "'";
  MCORE_CHECK(header.find("'fortran_order': False") != std::string::npos)
      << "'" << path << "': Fortran-order .npy arrays are not supported";
  MCORE_CHECK(std::regex_search(header, m, std::regex("'shape':\\s*\\(([^)]*)\\)")))
      << "'" << path << "': .npy header has no shape";
  Shape shape;
  std::string dims = m[1];
  std::regex num("\\d+");
  for (auto it = std::sregex_iterator(dims.begin(), dims.end(), num); it != std::sregex_iterator();
       ++it)
    shape.push_back(std::stoll(it->str()));

  Tensor t = empty(shape, dtype);
  f.read(static_cast<char*>(t.data_ptr()), static_cast<std::streamsize>(t.nbytes()));
  MCORE_CHECK(f || t.nbytes() == 0) << "'" << path << "': truncated .npy data (expected "
                                    << t.nbytes() << " bytes for shape " << shape_str(shape) << ")";
  return t;
}

void save_npy(const std::string& path, const Tensor& tensor) {
  Tensor t = tensor.to(Device::cpu()).contiguous();
  std::string shape = "(";
  for (size_t i = 0; i < t.shape().size(); ++i)
    shape += std::to_string(t.shape()[i]) +
             (t.shape().size() == 1 ? "," : (i + 1 < t.shape().size() ? ", " : ""));
  shape += ")";
  std::string header = std::string("{'descr': '") + descr_for(t.dtype()) +
                       "', 'fortran_order': False, 'shape': " + shape + ", }";
  size_t total = 10 + header.size() + 1;
  header += std::string((64 - total % 64) % 64, ' ') + "\n";
  std::string tmp = path + ".tmp";
  {
    std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
    MCORE_CHECK(f) << "cannot write '" << tmp << "'";
    f.write("\x93NUMPY\x01\x00", 8);
    uint16_t len = static_cast<uint16_t>(header.size());
    f.write(reinterpret_cast<const char*>(&len), 2);
    f.write(header.data(), static_cast<std::streamsize>(header.size()));
    f.write(static_cast<const char*>(t.data_ptr()), static_cast<std::streamsize>(t.nbytes()));
    MCORE_CHECK(f) << "error writing '" << tmp << "'";
  }
  MCORE_CHECK(std::rename(tmp.c_str(), path.c_str()) == 0)
      << "cannot rename '" << tmp << "' to '" << path << "'";
}

}  // namespace mcore
