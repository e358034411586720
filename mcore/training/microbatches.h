// Megatron's microbatch calculator (megatron/core/num_microbatches_calculator.py): how many
// micro-batches one iteration accumulates, constant or ramping the global batch size up with
// --rampup-batch-size <start> <increment> <ramp-up samples>.
//
//   MicrobatchCalculator calc(args);          // from micro/global batch, DP size, rampup
//   calc.update(consumed_train_samples);      // before every iteration
//   calc.num_microbatches(); calc.current_global_batch_size();
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

namespace mcore::training {

class MicrobatchCalculator {
 public:
  // rampup: {start, increment, ramp-up samples} or empty for a constant global batch.
  MicrobatchCalculator(int64_t global_batch_size, int64_t micro_batch_size,
                       int64_t data_parallel_size, std::vector<int64_t> rampup = {});

  // Megatron's update(consumed_samples, consistency_check): the ramp-up batch size for the
  // samples consumed so far.
  void update(int64_t consumed_samples);
  int64_t num_microbatches() const { return num_microbatches_; }
  int64_t current_global_batch_size() const { return current_global_batch_size_; }
  int64_t global_batch_size() const { return global_batch_size_; }

  // Megatron's update_train_iters for sample-based training: iterations through the ramp-up
  // plus the rest at the full global batch.
  int64_t train_iters_for_samples(int64_t train_samples) const;

 private:
  int64_t global_batch_size_, micro_batch_size_, data_parallel_size_;
  std::vector<int64_t> rampup_;
  double rampup_samples_per_increment_ = 0;
  int64_t num_microbatches_ = 1;
  int64_t current_global_batch_size_ = 0;
};

}  // namespace mcore::training
