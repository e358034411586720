#include "mcore/comm/mpi_ops.h"

#include <algorithm>
#include <mutex>

#include "mcore/base/error.h"
#include "mcore/base/float_types.h"

namespace mcore::comm::mpi {

namespace {

// Narrow float stored as 16 bits, operated on in fp32.
template <class T>
struct Narrow;
template <>
struct Narrow<BFloat16> {
  static float load(uint16_t b) { return bf16_bits_to_float(b); }
  static uint16_t store(float f) { return float_to_bf16_bits(f); }
};
template <>
struct Narrow<Half> {
  static float load(uint16_t b) { return fp16_bits_to_float(b); }
  static uint16_t store(float f) { return float_to_fp16_bits(f); }
};

struct Sum {
  static float apply(float a, float b) { return a + b; }
};
struct Max {
  // NaN propagates, as torch's max.
  static float apply(float a, float b) { return (a > b || a != a) ? a : b; }
};
struct Min {
  static float apply(float a, float b) { return (a < b || a != a) ? a : b; }
};

// MPI_User_function: inout[i] = op(in[i], inout[i]).
template <class T, class Op>
void narrow_reduce(void* in, void* inout, int* len, MPI_Datatype*) {
  const auto* a = static_cast<const uint16_t*>(in);
  auto* b = static_cast<uint16_t*>(inout);
  const int n = *len;
  for (int i = 0; i < n; ++i) {
    b[i] = Narrow<T>::store(Op::apply(Narrow<T>::load(a[i]), Narrow<T>::load(b[i])));
  }
}

struct CustomOps {
  MPI_Op ops[2][3];  // [bf16, fp16][sum, max, min]
  bool created = false;
};
CustomOps& custom_ops() {
  static CustomOps ops;
  return ops;
}
std::mutex& custom_mutex() {
  static std::mutex mu;
  return mu;
}

MPI_Op narrow_op(DType dtype, ReduceOp op) {
  std::lock_guard<std::mutex> lock(custom_mutex());
  CustomOps& c = custom_ops();
  if (!c.created) {
    // commute = 1: the reduction may combine pairs in any order (fp32 addition of two narrow
    // values is commutative, so only the grouping is left to MPI).
    check_mpi(MPI_Op_create(&narrow_reduce<BFloat16, Sum>, 1, &c.ops[0][0]), "MPI_Op_create");
    check_mpi(MPI_Op_create(&narrow_reduce<BFloat16, Max>, 1, &c.ops[0][1]), "MPI_Op_create");
    check_mpi(MPI_Op_create(&narrow_reduce<BFloat16, Min>, 1, &c.ops[0][2]), "MPI_Op_create");
    check_mpi(MPI_Op_create(&narrow_reduce<Half, Sum>, 1, &c.ops[1][0]), "MPI_Op_create");
    check_mpi(MPI_Op_create(&narrow_reduce<Half, Max>, 1, &c.ops[1][1]), "MPI_Op_create");
    check_mpi(MPI_Op_create(&narrow_reduce<Half, Min>, 1, &c.ops[1][2]), "MPI_Op_create");
    c.created = true;
  }
  const int which = op == ReduceOp::kMax ? 1 : op == ReduceOp::kMin ? 2 : 0;
  return c.ops[dtype == DType::BF16 ? 0 : 1][which];
}

MPI_Op native_op(ReduceOp op) {
  switch (op) {
    case ReduceOp::kSum:
    case ReduceOp::kAvg:
      return MPI_SUM;
    case ReduceOp::kMax:
      return MPI_MAX;
    case ReduceOp::kMin:
      return MPI_MIN;
  }
  return MPI_SUM;
}

template <class T>
void divide_native(T* p, int64_t n, int divisor) {
  const T d = static_cast<T>(divisor);
#pragma omp parallel for schedule(static) if (n > (1 << 16))
  for (int64_t i = 0; i < n; ++i) p[i] /= d;
}

template <class T>
void divide_narrow(uint16_t* p, int64_t n, int divisor) {
  const float d = static_cast<float>(divisor);
#pragma omp parallel for schedule(static) if (n > (1 << 16))
  for (int64_t i = 0; i < n; ++i) p[i] = Narrow<T>::store(Narrow<T>::load(p[i]) / d);
}

}  // namespace

void check_mpi(int rc, const char* call) {
  if (rc == MPI_SUCCESS) return;
  char text[MPI_MAX_ERROR_STRING];
  int len = 0;
  MPI_Error_string(rc, text, &len);
  MCORE_FAIL() << call << " failed: " << std::string(text, len);
}

ReduceSpec reduce_spec(DType dtype, ReduceOp op, const char* what) {
  if (op == ReduceOp::kAvg) {
    MCORE_CHECK(is_floating(dtype) && dtype != DType::F8E4M3 && dtype != DType::F8E5M2)
        << what << ": ReduceOp avg needs a float32/float64/bfloat16/float16 tensor, got " << dtype
        << " (use sum and divide, or convert first)";
  }
  switch (dtype) {
    case DType::F64:
      return {MPI_DOUBLE, native_op(op)};
    case DType::F32:
      return {MPI_FLOAT, native_op(op)};
    case DType::BF16:
    case DType::F16:
      return {MPI_UINT16_T, narrow_op(dtype, op)};
    case DType::I64:
      return {MPI_INT64_T, native_op(op)};
    case DType::I32:
      return {MPI_INT32_T, native_op(op)};
    case DType::I16:
      return {MPI_INT16_T, native_op(op)};
    case DType::I8:
      return {MPI_INT8_T, native_op(op)};
    case DType::U16:
      return {MPI_UINT16_T, native_op(op)};
    case DType::U8:
      return {MPI_UINT8_T, native_op(op)};
    // Bool: sum and max are "any", min is "all" (as torch does for bool tensors).
    case DType::BOOL:
      return {MPI_C_BOOL, op == ReduceOp::kMin ? MPI_LAND : MPI_LOR};
    default:
      MCORE_FAIL() << what << ": cannot reduce " << dtype
                   << " tensors (fp8 has no exact reduction; convert to bfloat16 or float32 first)";
  }
  return {MPI_BYTE, MPI_SUM};
}

void divide_inplace(void* data, int64_t n, DType dtype, int divisor) {
  switch (dtype) {
    case DType::F64:
      divide_native(static_cast<double*>(data), n, divisor);
      break;
    case DType::F32:
      divide_native(static_cast<float*>(data), n, divisor);
      break;
    case DType::BF16:
      divide_narrow<BFloat16>(static_cast<uint16_t*>(data), n, divisor);
      break;
    case DType::F16:
      divide_narrow<Half>(static_cast<uint16_t*>(data), n, divisor);
      break;
    default:
      MCORE_FAIL() << "avg: cannot divide a " << dtype << " tensor";
  }
}

void free_custom_ops() {
  std::lock_guard<std::mutex> lock(custom_mutex());
  CustomOps& c = custom_ops();
  if (!c.created) return;
  for (auto& row : c.ops)
    for (MPI_Op& op : row) MPI_Op_free(&op);
  c.created = false;
}

}  // namespace mcore::comm::mpi
