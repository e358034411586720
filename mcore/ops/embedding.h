// Embedding lookup and its gradient. weight [V, H], ids int64 or int32 of any shape [...] ->
// [..., H]. The backward scatter-adds output gradient rows into a dense [V, H] gradient
// deterministically: tokens are bucketed by id (a stable counting sort), then each vocabulary
// row is summed by one thread in token order, so the result does not depend on the thread count
// and needs no atomics. An id outside [0, V) is an error naming the id, its position and V.
#pragma once

#include "mcore/tensor/tensor.h"

namespace mcore::ops {

Tensor embedding_forward(const Tensor& weight, const Tensor& ids);

// grad_out [..., H] (shaped like ids plus H) -> d weight [num_embeddings, H] in grad_out's dtype
// (bf16/fp16 rows are summed in float32 and rounded once).
Tensor embedding_backward(const Tensor& grad_out, const Tensor& ids, int64_t num_embeddings);

// weight_grad [V, H] += embedding_backward(grad_out, ids, V), in place on a contiguous CPU tensor
// of grad_out's dtype, touching only the rows of ids that occur: each row's sum is rounded to
// the dtype and then added, as the dense gradient would be.
void embedding_backward_add_(Tensor& weight_grad, const Tensor& grad_out, const Tensor& ids);

}  // namespace mcore::ops
