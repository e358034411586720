#include "mcore/transformer/dot_product_attention.h"

#include <cmath>
#include <limits>

#include "mcore/base/rng_state.h"
#include "mcore/nn/functional.h"
#include "mcore/nn/init.h"
#include "mcore/tensor/factory.h"
#include "mcore/tensor_parallel/utils.h"

namespace mcore::transformer {

DotProductAttention::DotProductAttention(const CoreAttentionArgs& args)
    : config_(args.config),
      causal_(args.attn_mask_type == AttnMaskType::kCausal ||
              args.attn_mask_type == AttnMaskType::kPaddingCausal),
      dropout_p_(args.config->attention_dropout),
      dropout_stream_(nn::stream_for_name(args.param_name("attention_dropout"))),
      tp_group_(args.tp_group),
      cp_(context_parallel_layout(args.config->context_parallel_size)) {
  softmax_scale_ = config_->softmax_scale > 0
                       ? config_->softmax_scale
                       : 1.0 / std::sqrt(static_cast<double>(config_->kv_channels));
}

Tensor DotProductAttention::forward(const Tensor& q, const Tensor& k, const Tensor& v,
                                    const Tensor& mask) const {
  MCORE_CHECK(q.dim() == 4 && k.dim() == 4 && v.dim() == 4)
      << "DotProductAttention: query/key/value must be [s, b, heads, head_dim], got "
      << shape_str(q.shape()) << ", " << shape_str(k.shape()) << ", " << shape_str(v.shape());
  MCORE_CHECK(q.size(2) % k.size(2) == 0 && k.size(2) == v.size(2))
      << "DotProductAttention: query heads (" << q.size(2) << ") must be a multiple of the "
      << "key/value heads (" << k.size(2) << ", " << v.size(2) << ")";
  const int64_t sq = q.size(0), b = q.size(1), np = q.size(2), hn = v.size(3);
  Tensor ctx = cp_.size > 1 ? context_parallel(q, k, v, mask) : attend(q, k, v, mask);
  return F::reshape(ctx, {sq, b, np * hn});
}

Tensor DotProductAttention::attend(const Tensor& q, const Tensor& k, const Tensor& v,
                                   const Tensor& mask, int64_t q_row, int64_t global_len) const {
  if (is_training() && dropout_p_ > 0) return unfused(q, k, v, mask, q_row, global_len);
  ops::AttentionOptions o;
  o.softmax_scale = softmax_scale_;
  o.causal = causal_;
  o.attention_mask = mask;
  return F::attention(q, k, v, o);  // [sq, b, np, hn], contiguous
}

// Each local chunk's queries sit at global rows [g c, (g + 1) c); causally they see the keys
// [0, (g + 1) c), whose bottom-right aligned causal mask is the global one.
Tensor DotProductAttention::context_parallel(const Tensor& q, const Tensor& k, const Tensor& v,
                                             const Tensor& mask) const {
  const int64_t sl = q.size(0), c = sl / 2;
  MCORE_CHECK(k.size(0) == sl && v.size(0) == sl && sl % 2 == 0)
      << "DotProductAttention: under context parallelism q, k and v hold this rank's two "
      << "sequence chunks, got " << shape_str(q.shape()) << ", " << shape_str(k.shape()) << ", "
      << shape_str(v.shape());
  const Tensor kg = gather_sequence_from_context_parallel_region(k, cp_);
  const Tensor vg = gather_sequence_from_context_parallel_region(v, cp_);
  const int64_t s = kg.size(0);
  std::vector<Tensor> out;
  for (int j = 0; j < 2; ++j) {
    const int64_t g = cp_.global_chunk(j);
    const int64_t len = causal_ ? (g + 1) * c : s;
    Tensor m;
    if (mask.defined()) {
      // The batch's mask holds this rank's query rows and every key.
      m = mask.dim() == 2 ? mask.narrow(1, 0, len) : mask.narrow(3, 0, len);
      if (m.dim() == 4 && m.size(2) == sl) m = m.narrow(2, j * c, c);
      m = m.contiguous();
    }
    out.push_back(attend(F::narrow(q, 0, j * c, c), F::narrow(kg, 0, 0, len),
                         F::narrow(vg, 0, 0, len), m, g * c, s));
  }
  return F::cat(out, 0);
}

namespace {

// [s, b, n, d] -> [n, b, s, d] contiguous (heads outermost).
Tensor heads_first(const Tensor& t) {
  return F::contiguous(F::permute(t, {2, 1, 0, 3}));
}

}  // namespace

Tensor DotProductAttention::unfused(const Tensor& q, const Tensor& k, const Tensor& v,
                                    const Tensor& mask, int64_t q_row, int64_t global_len) const {
  const int64_t sq = q.size(0), b = q.size(1), np = q.size(2), sk = k.size(0), ng = k.size(2);
  Tensor qh = heads_first(q), kh = heads_first(k), vh = heads_first(v);  // [n, b, s, d]
  if (np != ng) {
    // Query head h reads key/value group h / (np / ng): repeat each group np/ng times.
    std::vector<Tensor> ks, vs;
    for (int64_t g = 0; g < ng; ++g) {
      Tensor kg = F::narrow(kh, 0, g, 1), vg = F::narrow(vh, 0, g, 1);
      for (int64_t r = 0; r < np / ng; ++r) {
        ks.push_back(kg);
        vs.push_back(vg);
      }
    }
    kh = F::cat(ks, 0);
    vh = F::cat(vs, 0);
  }
  Tensor scores = F::matmul(qh, kh, false, true);  // [np, b, sq, sk]
  if (mask.defined()) {
    // Additive -inf bias where masked; F::softmax turns fully masked rows into zeros.
    Tensor m = mask.to(DType::F32);
    Shape bias_shape;
    if (mask.dim() == 2) {
      MCORE_CHECK(mask.size(0) == b && mask.size(1) == sk)
          << "DotProductAttention: a 2-d attention_mask must be [b, sk] = [" << b << ", " << sk
          << "], got " << shape_str(mask.shape());
      bias_shape = {1, b, 1, sk};
    } else {
      MCORE_CHECK(mask.dim() == 4 && mask.size(0) == b && mask.size(1) == 1 &&
                  (mask.size(2) == sq || mask.size(2) == 1) && mask.size(3) == sk)
          << "DotProductAttention (dropout path): attention_mask must be [b, sk] or "
          << "[b, 1, sq|1, sk] with b=" << b << " sq=" << sq << " sk=" << sk << ", got "
          << shape_str(mask.shape());
      bias_shape = {1, b, mask.size(2), sk};
    }
    Tensor mc = m.to(Device::cpu()).contiguous();  // built on the host, then moved
    const float* src = mc.data<float>();
    const double neg_inf = -std::numeric_limits<double>::infinity();
    Tensor bias64 = empty(bias_shape, DType::F64);
    double* dst = bias64.data<double>();
    for (int64_t i = 0; i < bias64.numel(); ++i) dst[i] = src[i] != 0.0f ? neg_inf : 0.0;
    scores = F::add(scores, bias64.to(scores.dtype()).to(scores.device()));
  }
  Tensor probs = F::softmax(scores, softmax_scale_, causal_);
  // This rank's heads are the contiguous slice [rank * np, (rank + 1) * np) of the global
  // [heads, b, sq, sk] probabilities. Under context parallelism the global tensor is
  // [heads, b, s, s], and this block is rows [q_row, q_row + sq) and keys [0, sk) of each
  // (head, sample) slab.
  int tp_rank = 0;
  if (config_->tensor_model_parallel_size > 1)
    tp_rank = tensor_parallel::resolve_tp_group(tp_group_)->rank();
  ops::DropoutIndexMap map =
      ops::DropoutIndexMap::contiguous(static_cast<uint64_t>(tp_rank) * probs.numel());
  if (q_row >= 0) {
    const uint64_t slab = static_cast<uint64_t>(global_len) * global_len;
    map.offset = static_cast<uint64_t>(tp_rank * np * b) * slab + q_row * global_len;
    map.rows = sq;
    map.cols = sk;
    map.row_stride = global_len;
    map.slab_stride = slab;
  }
  RngState rng = get_rng_state();
  probs = F::dropout(probs, dropout_p_, true, rng.seed, mix_stream(dropout_stream_, rng.step), map);
  Tensor ctx = F::matmul(probs, vh);                    // [np, b, sq, hn]
  return F::contiguous(F::permute(ctx, {2, 1, 0, 3}));  // [sq, b, np, hn]
}

}  // namespace mcore::transformer
