// Dropout module. Its mask is keyed by (rng seed, rng step, this module's stream id, global
// element index): the same on every rank that holds the same elements, different every
// microbatch (the trainer advances the step), and identical when activation recompute replays
// the forward.
#pragma once

#include "mcore/nn/module.h"

namespace mcore::nn {

class Dropout : public Module {
 public:
  // stream_id: stable per module (e.g. stream_for_name of its dotted name).
  Dropout(double p, uint64_t stream_id);
  // global_offset: flat index of x's first element in the global tensor when x is a shard.
  Tensor forward(const Tensor& x, uint64_t global_offset = 0) const;
  double p() const { return p_; }

 private:
  double p_;
  uint64_t stream_id_;
};

}  // namespace mcore::nn
