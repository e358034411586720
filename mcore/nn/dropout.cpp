#include "mcore/nn/dropout.h"

#include "mcore/base/rng_state.h"
#include "mcore/nn/functional/dropout.h"

namespace mcore::nn {

Dropout::Dropout(double p, uint64_t stream_id) : p_(p), stream_id_(stream_id) {
  MCORE_CHECK(p >= 0.0 && p < 1.0) << "Dropout: p must be in [0, 1), got " << p;
}

Tensor Dropout::forward(const Tensor& x, uint64_t global_offset) const {
  if (!is_training() || p_ == 0.0) return x;
  RngState s = get_rng_state();
  return F::dropout(x, p_, true, s.seed, mix_stream(stream_id_, s.step), global_offset);
}

}  // namespace mcore::nn
