// DotProductAttention: the core_attention slot, softmax(q k^T * scale + mask) v over one
// tensor-parallel rank's heads (Megatron's transformer/dot_product_attention.py).
//
// q [sq, b, np, hn], k/v [sk, b, ng, hn] (np a multiple of ng: MHA, GQA, MQA) -> context
// [sq, b, np * hn]. softmax_scale is config.softmax_scale, else 1/sqrt(kv_channels).
// apply_query_key_layer_scaling divides the scores by layer_number and multiplies the fp32
// softmax input back by it; in fp32 that is the identity, so it is not applied twice here.
//
// Two paths, the same math:
//   fused   F::attention (FlashAttention-style, no [sq, sk] matrix kept) - used whenever no
//           attention dropout is active (eval, or attention_dropout = 0, the usual LLM setting);
//   unfused scores, F::softmax, Philox dropout on the probabilities, probs @ v - used in
//           training with attention_dropout > 0. The probability tensor is laid out
//           [np, b, sq, sk] so a rank's heads are one contiguous slice of the global
//           [heads, b, sq, sk] tensor and the dropout mask is the same for any tensor-parallel
//           layout.
// Context parallelism (config.context_parallel_size > 1, transformer/context_parallel.h): q, k
// and v hold this rank's two sequence chunks; k and v are all-gathered over the group and each
// query chunk attends to the key prefix up to its own end, through either path. Attention
// dropout stays keyed by the element's place in the global probabilities.
// Masks: causal for AttnMaskType kCausal / kPaddingCausal (bottom-right aligned), plus the
// optional bool attention_mask (TRUE = masked out) shaped [b, sk] or [b, 1, sq|1, sk].
#pragma once

#include "mcore/nn/module.h"
#include "mcore/transformer/context_parallel.h"
#include "mcore/transformer/spec.h"

namespace mcore::transformer {

class DotProductAttention : public nn::Module {
 public:
  explicit DotProductAttention(const CoreAttentionArgs& args);

  Tensor forward(const Tensor& query, const Tensor& key, const Tensor& value,
                 const Tensor& attention_mask = Tensor()) const;

  double softmax_scale() const { return softmax_scale_; }

 private:
  // One block of queries against its keys. Under context parallelism the queries are global
  // rows [q_row, q_row + sq) and the keys a prefix of the global_len keys; q_row < 0: the block
  // is the whole (tensor-parallel rank's) problem.
  Tensor attend(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& mask,
                int64_t q_row = -1, int64_t global_len = 0) const;
  Tensor unfused(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& mask,
                 int64_t q_row, int64_t global_len) const;
  Tensor context_parallel(const Tensor& q, const Tensor& k, const Tensor& v,
                          const Tensor& mask) const;

  const TransformerConfig* config_;
  bool causal_;
  double softmax_scale_;
  double dropout_p_;
  uint64_t dropout_stream_;
  ProcessGroupPtr tp_group_;
  ContextParallelLayout cp_;
};

}  // namespace mcore::transformer
