#include "mcore/ops/embedding.h"

#include <emmintrin.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include "mcore/ops/cpu/acc_type.h"
#include "mcore/ops/device_route.h"
#include "mcore/tensor/factory.h"

#ifdef MCORE_WITH_CUDA
#include "mcore/ops/cuda/embedding_cuda.h"
#endif

namespace mcore::ops {

namespace {

void check_ids_dtype(const Tensor& ids, const char* op) {
  MCORE_CHECK(ids.dtype() == DType::I64 || ids.dtype() == DType::I32)
      << op << ": ids must be int64 or int32, got " << ids.dtype() << " " << shape_str(ids.shape());
}

// The ids as int64, each checked against V (serially, before any parallel region).
Tensor checked_ids(const Tensor& ids, int64_t V, const char* op, const Shape& weight_shape) {
  check_ids_dtype(ids, op);
  Tensor t = ids.to(DType::I64).contiguous();
  const int64_t* p = t.data<int64_t>();
  for (int64_t n = 0; n < t.numel(); ++n) {
    MCORE_CHECK(p[n] >= 0 && p[n] < V)
        << op << ": id " << p[n] << " at flat index " << n << " of ids " << shape_str(ids.shape())
        << " is out of range for an embedding table of V = " << V << " rows (weight "
        << shape_str(weight_shape) << ")";
  }
  return t;
}

template <class T>
void gather_kernel(const T* w, const int64_t* ids, T* out, int64_t n, int64_t H) {
#pragma omp parallel for schedule(static) if (n * H > 32768)
  for (int64_t i = 0; i < n; ++i)
    std::memcpy(out + i * H, w + ids[i] * H, static_cast<size_t>(H) * sizeof(T));
}

// Zeroes a row of the dense gradient that no token touches: almost every row of a large
// vocabulary's table. Whole 64-byte lines go out as non-temporal stores (no read for ownership
// of lines that are only overwritten: the 65 MB table of a 32000 x 512 embedding is otherwise
// read once for nothing); the ragged ends are filled normally.
template <class T>
void zero_row(T* o, int64_t n) {
  char* p = reinterpret_cast<char*>(o);
  char* end = p + n * int64_t(sizeof(T));
  char* a = reinterpret_cast<char*>((reinterpret_cast<uintptr_t>(p) + 63) & ~uintptr_t(63));
  char* z = reinterpret_cast<char*>(reinterpret_cast<uintptr_t>(end) & ~uintptr_t(63));
  if (a >= z) {
    std::memset(p, 0, end - p);  // T's zero is all-zero bits for every float type
    return;
  }
  std::memset(p, 0, a - p);
  const __m128i zero = _mm_setzero_si128();
  for (char* q = a; q < z; q += 64) {
    _mm_stream_si128(reinterpret_cast<__m128i*>(q), zero);
    _mm_stream_si128(reinterpret_cast<__m128i*>(q + 16), zero);
    _mm_stream_si128(reinterpret_cast<__m128i*>(q + 32), zero);
    _mm_stream_si128(reinterpret_cast<__m128i*>(q + 48), zero);
  }
  std::memset(z, 0, end - z);
}

// rows[start[v] .. start[v + 1]) are the tokens with id v, in token order. Each row v of out gets
// its tokens' gradient rows summed in A and rounded to T once: written (ids that do not occur get
// zeros), or with kAccumulate added to what out holds (rows of absent ids untouched).
template <class T, bool kAccumulate>
void scatter_add_kernel(const T* g, const int64_t* start, const int64_t* tokens, T* out, int64_t V,
                        int64_t H) {
  using A = acc_t<T>;
#pragma omp parallel
  {
    std::vector<A> acc(static_cast<size_t>(H));
#pragma omp for schedule(dynamic, 16)
    for (int64_t v = 0; v < V; ++v) {
      T* o = out + v * H;
      const int64_t b = start[v], e = start[v + 1];
      if (b == e) {
        if (!kAccumulate) zero_row(o, H);
        continue;
      }
      std::fill(acc.begin(), acc.end(), A(0));
      A* a = acc.data();
      for (int64_t k = b; k < e; ++k) {
        const T* gr = g + tokens[k] * H;
#pragma omp simd
        for (int64_t h = 0; h < H; ++h) a[h] += static_cast<A>(gr[h]);
      }
      for (int64_t h = 0; h < H; ++h) {
        if constexpr (kAccumulate) {
          o[h] = store<T>(static_cast<A>(o[h]) + static_cast<A>(store<T>(a[h])));
        } else {
          o[h] = store<T>(a[h]);
        }
      }
    }
    _mm_sfence();  // the streamed zeros are visible before the region's closing barrier
  }
}

// Token positions bucketed by id: tokens[start[v] .. start[v + 1]) have id v, in token order.
void bucket_by_id(const int64_t* ip, int64_t n, int64_t V, std::vector<int64_t>& start,
                  std::vector<int64_t>& tokens) {
  start.assign(static_cast<size_t>(V) + 1, 0);
  tokens.resize(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) ++start[ip[i] + 1];
  for (int64_t v = 0; v < V; ++v) start[v + 1] += start[v];
  std::vector<int64_t> fill(start.begin(), start.end() - 1);
  for (int64_t i = 0; i < n; ++i) tokens[fill[ip[i]]++] = i;
}

}  // namespace

Tensor embedding_forward(const Tensor& weight_in, const Tensor& ids) {
  [[maybe_unused]] const bool on_gpu = on_cuda({weight_in, ids}, "embedding_forward");
  MCORE_CHECK(weight_in.dim() == 2)
      << "embedding_forward: weight must be [V, H], got " << shape_str(weight_in.shape())
      << " (ids " << shape_str(ids.shape()) << ")";
  const int64_t V = weight_in.size(0), H = weight_in.size(1);
#ifdef MCORE_WITH_CUDA
  if (on_gpu) {
    check_ids_dtype(ids, "embedding_forward");  // the range is checked on the device
    return cuda::embedding_forward(weight_in, ids);
  }
#endif
  Tensor t = checked_ids(ids, V, "embedding_forward", weight_in.shape());
  const Tensor weight = weight_in.contiguous();
  Shape shape = ids.shape();
  shape.push_back(H);
  Tensor out = empty(shape, {weight.dtype(), weight.device()});
  const int64_t n = t.numel();
  const int64_t* ip = t.data<int64_t>();
  // A row copy is dtype-agnostic; dispatch only on the element size.
  switch (weight.element_size()) {
    case 8:
      gather_kernel(static_cast<const int64_t*>(weight.data_ptr()), ip,
                    static_cast<int64_t*>(out.data_ptr()), n, H);
      break;
    case 4:
      gather_kernel(static_cast<const int32_t*>(weight.data_ptr()), ip,
                    static_cast<int32_t*>(out.data_ptr()), n, H);
      break;
    case 2:
      gather_kernel(static_cast<const int16_t*>(weight.data_ptr()), ip,
                    static_cast<int16_t*>(out.data_ptr()), n, H);
      break;
    default:
      gather_kernel(static_cast<const int8_t*>(weight.data_ptr()), ip,
                    static_cast<int8_t*>(out.data_ptr()), n, H);
      break;
  }
  return out;
}

Tensor embedding_backward(const Tensor& grad_in, const Tensor& ids, int64_t num_embeddings) {
  [[maybe_unused]] const bool on_gpu = on_cuda({grad_in, ids}, "embedding_backward");
  Shape want = ids.shape();
  MCORE_CHECK(grad_in.dim() == ids.dim() + 1 &&
              Shape(grad_in.shape().begin(), grad_in.shape().end() - 1) == want)
      << "embedding_backward: grad_out " << shape_str(grad_in.shape())
      << " must be shaped like ids " << shape_str(ids.shape()) << " plus a hidden dimension";
  MCORE_CHECK(num_embeddings >= 0)
      << "embedding_backward: num_embeddings " << num_embeddings << " must be non-negative";
  const int64_t V = num_embeddings, H = grad_in.size(-1);
#ifdef MCORE_WITH_CUDA
  if (on_gpu) {
    check_ids_dtype(ids, "embedding_backward");  // the range is checked on the device
    return cuda::embedding_backward(grad_in, ids, num_embeddings);
  }
#endif
  Tensor t = checked_ids(ids, V, "embedding_backward", {V, H});
  const Tensor grad = grad_in.contiguous();
  const int64_t n = t.numel();
  const int64_t* ip = t.data<int64_t>();
  std::vector<int64_t> start, tokens;
  bucket_by_id(ip, n, V, start, tokens);  // a stable counting sort
  Tensor out = empty({V, H}, {grad.dtype(), grad.device()});
  MCORE_DISPATCH_FLOAT_TYPES(grad.dtype(), "embedding_backward", [&] {
    scatter_add_kernel<scalar_t, false>(grad.data<scalar_t>(), start.data(), tokens.data(),
                                        out.data<scalar_t>(), V, H);
  });
  return out;
}

void embedding_backward_add_(Tensor& weight_grad, const Tensor& grad_in, const Tensor& ids) {
  check_cpu({weight_grad, grad_in, ids}, "embedding_backward_add_");
  MCORE_CHECK(weight_grad.dim() == 2 && weight_grad.is_contiguous() &&
              weight_grad.dtype() == grad_in.dtype() && grad_in.dim() == ids.dim() + 1 &&
              grad_in.size(-1) == weight_grad.size(1) &&
              Shape(grad_in.shape().begin(), grad_in.shape().end() - 1) == ids.shape())
      << "embedding_backward_add_: weight gradient " << shape_str(weight_grad.shape()) << " "
      << weight_grad.dtype() << " (contiguous [V, H]) does not fit grad_out "
      << shape_str(grad_in.shape()) << " " << grad_in.dtype() << " and ids "
      << shape_str(ids.shape());
  const int64_t V = weight_grad.size(0), H = weight_grad.size(1);
  Tensor t = checked_ids(ids, V, "embedding_backward_add_", weight_grad.shape());
  const Tensor grad = grad_in.contiguous();
  std::vector<int64_t> start, tokens;
  bucket_by_id(t.data<int64_t>(), t.numel(), V, start, tokens);
  MCORE_DISPATCH_FLOAT_TYPES(grad.dtype(), "embedding_backward_add_", [&] {
    scatter_add_kernel<scalar_t, true>(grad.data<scalar_t>(), start.data(), tokens.data(),
                                       weight_grad.data<scalar_t>(), V, H);
  });
}

}  // namespace mcore::ops
