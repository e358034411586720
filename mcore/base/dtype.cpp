#include "mcore/base/dtype.h"

namespace mcore {

namespace {
struct Info {
  DType d;
  size_t size;
  const char* name;
};
constexpr Info kInfo[] = {
    {DType::F64, 8, "float64"},
    {DType::F32, 4, "float32"},
    {DType::BF16, 2, "bfloat16"},
    {DType::F16, 2, "float16"},
    {DType::F8E4M3, 1, "float8_e4m3fn"},
    {DType::F8E5M2, 1, "float8_e5m2"},
    {DType::I64, 8, "int64"},
    {DType::I32, 4, "int32"},
    {DType::I16, 2, "int16"},
    {DType::I8, 1, "int8"},
    {DType::U16, 2, "uint16"},
    {DType::U8, 1, "uint8"},
    {DType::BOOL, 1, "bool"},
};
const Info& info(DType d) {
  auto i = static_cast<size_t>(d);
  MCORE_CHECK(i < sizeof(kInfo) / sizeof(kInfo[0])) << "bad dtype code " << i;
  return kInfo[i];
}
}  // namespace

size_t dtype_size(DType d) {
  return info(d).size;
}
const char* dtype_name(DType d) {
  return info(d).name;
}

DType dtype_from_name(const std::string& name) {
  for (const auto& i : kInfo)
    if (name == i.name) return i.d;
  if (name == "float" || name == "fp32") return DType::F32;
  if (name == "double" || name == "fp64") return DType::F64;
  if (name == "half" || name == "fp16") return DType::F16;
  if (name == "bf16") return DType::BF16;
  MCORE_FAIL() << "unknown dtype name '" << name << "'";
  throw 0;
}

bool is_floating(DType d) {
  return d == DType::F64 || d == DType::F32 || is_low_precision(d);
}
bool is_low_precision(DType d) {
  return d == DType::BF16 || d == DType::F16 || d == DType::F8E4M3 || d == DType::F8E5M2;
}

}  // namespace mcore
