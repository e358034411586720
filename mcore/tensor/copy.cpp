#include "mcore/tensor/copy.h"

#include <omp.h>

#include <array>
#include <bit>
#include <cmath>
#include <cstring>
#include <type_traits>

#include "mcore/tensor/strided.h"
#ifdef MCORE_WITH_CUDA
#include "mcore/tensor/cuda/tensor_cuda.h"
#endif

namespace mcore {

namespace {

DeviceCopyFn g_device_copy = nullptr;

template <class T>
inline constexpr bool is_narrow_float_v =
    std::is_same_v<T, BFloat16> || std::is_same_v<T, Half> || std::is_same_v<T, Float8E4M3> ||
    std::is_same_v<T, Float8E5M2>;

// Conversions go through the bit patterns wherever float subnormals can appear, because compute
// threads run with FTZ/DAZ (mcore/base/compute_env.h) and the hardware conversions would flush
// them: a dtype conversion must be exact, whatever the arithmetic mode.
template <class D, class S>
inline D convert(S v, [[maybe_unused]] bool saturate) {
  if constexpr (std::is_same_v<D, S>) {
    return v;
  } else if constexpr (is_narrow_float_v<D> && std::is_same_v<S, double>) {
    // One correct rounding from double: round to odd on float first (a plain float detour
    // would round twice, e.g. 1 + 2^-8 + 2^-30 -> bf16 would give 1 instead of 1 + 2^-7).
    float f = double_to_float_exact(v, /*round_to_odd=*/true);
    if constexpr (std::is_same_v<D, Float8E4M3> || std::is_same_v<D, Float8E5M2>) {
      return D(f, saturate);
    } else {
      return D(f);
    }
  } else if constexpr (std::is_same_v<D, Float8E4M3> || std::is_same_v<D, Float8E5M2>) {
    return D(static_cast<float>(v), saturate);
  } else if constexpr (std::is_same_v<D, BFloat16> || std::is_same_v<D, Half>) {
    return D(static_cast<float>(v));
  } else if constexpr (std::is_same_v<D, double> &&
                       (is_narrow_float_v<S> || std::is_same_v<S, float>)) {
    return float_to_double_exact(static_cast<float>(v));
  } else if constexpr (std::is_same_v<D, float> && std::is_same_v<S, double>) {
    // Hardware conversion unless the result may be subnormal (|v| < 2^-126) and get flushed.
    return std::fabs(v) >= 0x1p-126 || !(v == v) ? static_cast<float>(v) : double_to_float_exact(v);
  } else if constexpr (std::is_same_v<D, bool> && std::is_same_v<S, double>) {
    // Nonzero by the bits: under DAZ a denormal compares equal to 0 (PyTorch: true).
    return (std::bit_cast<uint64_t>(v) << 1) != 0;
  } else if constexpr (std::is_same_v<D, bool> &&
                       (std::is_same_v<S, float> || is_narrow_float_v<S>)) {
    // The narrow formats widen to float through their bits (exact, denormals kept).
    return (std::bit_cast<uint32_t>(static_cast<float>(v)) << 1) != 0;
  } else if constexpr (is_narrow_float_v<S>) {
    return static_cast<D>(static_cast<float>(v));
  } else if constexpr (std::is_same_v<D, bool>) {
    return v != S(0);
  } else {
    return static_cast<D>(v);
  }
}

template <class D, class S>
void copy_typed(Tensor& dst, const Tensor& src, bool saturate) {
  D* d = static_cast<D*>(dst.data_ptr());
  const S* s = static_cast<const S*>(src.data_ptr());
  const int64_t n = dst.numel();
  if (dst.is_contiguous() && src.is_contiguous()) {
    if constexpr (std::is_same_v<D, S>) {
      // Split in per-thread chunks when large: one thread's memcpy leaves bandwidth unused.
      const size_t bytes = static_cast<size_t>(n) * sizeof(D);
      if (bytes > (size_t(1) << 20) && dst.storage() != src.storage() && !omp_in_parallel()) {
#pragma omp parallel
        {
          const size_t t = omp_get_thread_num(), nt = omp_get_num_threads();
          const size_t b0 = bytes * t / nt / 64 * 64,
                       b1 = t + 1 == nt ? bytes : bytes * (t + 1) / nt / 64 * 64;
          std::memcpy(reinterpret_cast<char*>(d) + b0, reinterpret_cast<const char*>(s) + b0,
                      b1 - b0);
        }
      } else {
        std::memcpy(d, s, bytes);
      }
    } else {
#pragma omp parallel for schedule(static) if (n > 65536)
      for (int64_t i = 0; i < n; ++i) d[i] = convert<D, S>(s[i], saturate);
    }
    return;
  }
  std::array<const Shape*, 2> st = {&dst.strides(), &src.strides()};
  auto copy_row = [&](const std::array<int64_t, 2>& off, int64_t len,
                      const std::array<int64_t, 2>& inner) {
    D* dp = d + off[0];
    const S* sp = s + off[1];
    if constexpr (std::is_same_v<D, S>) {
      // Unit-stride rows (slices of a fused tensor, the split backward): one memmove per row
      // instead of an element loop the compiler cannot vectorize for runtime strides.
      if (inner[0] == 1 && inner[1] == 1) {
        std::memmove(dp, sp, static_cast<size_t>(len) * sizeof(D));
        return;
      }
    }
    for (int64_t i = 0; i < len; ++i) dp[i * inner[0]] = convert<D, S>(sp[i * inner[1]], saturate);
  };
  // Large strided copies (the split backward's gradient slices, 4.7 MB per GPT-2 layer) use
  // every thread: one thread's copy runs at a fraction of the memory bandwidth.
  const int64_t rows = row_count(dst.shape());
  const bool disjoint = dst.storage() != src.storage();  // rows of one buffer keep their order
  if (n > (int64_t(1) << 16) && rows > 1 && disjoint && !omp_in_parallel()) {
#pragma omp parallel
    {
      const int64_t t = omp_get_thread_num(), nt = omp_get_num_threads();
      for_each_row_range<2>(dst.shape(), st, rows * t / nt, rows * (t + 1) / nt, copy_row);
    }
    return;
  }
  for_each_row<2>(dst.shape(), st, copy_row);
}

template <class T>
void fill_typed(Tensor& dst, double value) {
  T v = convert<T, double>(value, false);
  T* d = static_cast<T*>(dst.data_ptr());
  if (dst.is_contiguous()) {
    const int64_t n = dst.numel();
    for (int64_t i = 0; i < n; ++i) d[i] = v;
    return;
  }
  std::array<const Shape*, 1> st = {&dst.strides()};
  for_each_row<1>(
      dst.shape(), st,
      [&](const std::array<int64_t, 1>& off, int64_t len, const std::array<int64_t, 1>& inner) {
        for (int64_t i = 0; i < len; ++i) d[off[0] + i * inner[0]] = v;
      });
}

}  // namespace

void copy_tensor(Tensor& dst, const Tensor& src, bool saturate) {
  MCORE_CHECK(dst.shape() == src.shape())
      << "copy: destination shape " << shape_str(dst.shape()) << " does not match source shape "
      << shape_str(src.shape());
  if (dst.numel() == 0) return;
  if (!dst.device().is_cpu() || !src.device().is_cpu()) {
#ifdef MCORE_WITH_CUDA
    // Any dtypes and layouts, converted on the GPU.
    if (dst.device().is_cuda() || src.device().is_cuda()) {
      cuda::copy_tensor(dst, src, saturate);
      return;
    }
#endif
    MCORE_CHECK(dst.dtype() == src.dtype() && dst.is_contiguous() && src.is_contiguous())
        << "copy between devices needs contiguous tensors of one dtype (got " << src.dtype()
        << " -> " << dst.dtype() << "); convert on the device first";
    copy_between_devices(dst, src);
    return;
  }
  MCORE_DISPATCH_ALL(dst.dtype(), "copy", [&] {
    using D = scalar_t;
    MCORE_DISPATCH_ALL(src.dtype(), "copy", [&] { copy_typed<D, scalar_t>(dst, src, saturate); });
  });
}

void fill_tensor(Tensor& dst, double value) {
#ifdef MCORE_WITH_CUDA
  if (dst.device().is_cuda()) {
    cuda::fill_tensor(dst, value);
    return;
  }
#endif
  MCORE_CHECK(dst.device().is_cpu()) << "fill_ on " << dst.device() << " is not supported yet";
  MCORE_DISPATCH_ALL(dst.dtype(), "fill_", [&] { fill_typed<scalar_t>(dst, value); });
}

void copy_between_devices(Tensor& dst, const Tensor& src) {
  MCORE_CHECK(dst.nbytes() == src.nbytes())
      << "device copy: size mismatch " << dst.nbytes() << " vs " << src.nbytes() << " bytes";
  if (dst.device().is_cpu() && src.device().is_cpu()) {
    std::memcpy(dst.data_ptr(), src.data_ptr(), dst.nbytes());
    return;
  }
  MCORE_CHECK(g_device_copy) << "copy " << src.device() << " -> " << dst.device()
                             << ": no device backend is initialized in this build";
  g_device_copy(dst.data_ptr(), dst.device(), src.data_ptr(), src.device(), dst.nbytes());
}

void set_device_copy(DeviceCopyFn fn) {
  g_device_copy = fn;
}

}  // namespace mcore
