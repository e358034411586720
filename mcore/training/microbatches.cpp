#include "mcore/training/microbatches.h"

#include "mcore/base/error.h"

namespace mcore::training {

MicrobatchCalculator::MicrobatchCalculator(int64_t global_batch_size, int64_t micro_batch_size,
                                           int64_t data_parallel_size, std::vector<int64_t> rampup)
    : global_batch_size_(global_batch_size),
      micro_batch_size_(micro_batch_size),
      data_parallel_size_(data_parallel_size),
      rampup_(std::move(rampup)) {
  const int64_t per_step = micro_batch_size_ * data_parallel_size_;
  MCORE_CHECK(per_step > 0 && global_batch_size_ % per_step == 0)
      << "global batch size (" << global_batch_size_ << ") is not divisible by micro batch size ("
      << micro_batch_size_ << ") times data parallel size (" << data_parallel_size_ << ")";
  if (!rampup_.empty()) {
    MCORE_CHECK(rampup_.size() == 3 && rampup_[0] > 0 && rampup_[1] > 0 && rampup_[2] >= 0)
        << "--rampup-batch-size expects <start> <increment> <ramp-up samples>";
    const int64_t diff = global_batch_size_ - rampup_[0];
    MCORE_CHECK(diff >= 0 && diff % rampup_[1] == 0)
        << "--rampup-batch-size: global batch size interval (" << diff
        << ") is not divisible by the batch size increment (" << rampup_[1] << ")";
    const int64_t num_increments = diff / rampup_[1];
    rampup_samples_per_increment_ =
        num_increments > 0 ? static_cast<double>(rampup_[2]) / num_increments : 0.0;
  }
  update(0);
}

void MicrobatchCalculator::update(int64_t consumed_samples) {
  if (rampup_.empty() || consumed_samples > rampup_[2] || rampup_samples_per_increment_ <= 0) {
    current_global_batch_size_ = global_batch_size_;
  } else {
    const int64_t steps =
        static_cast<int64_t>(static_cast<double>(consumed_samples) / rampup_samples_per_increment_);
    current_global_batch_size_ = rampup_[0] + steps * rampup_[1];
    if (current_global_batch_size_ > global_batch_size_)
      current_global_batch_size_ = global_batch_size_;
  }
  const int64_t per_step = micro_batch_size_ * data_parallel_size_;
  // Megatron rounds a ramp-up batch that is not a multiple down to one (at least one step).
  num_microbatches_ = current_global_batch_size_ / per_step;
  if (num_microbatches_ < 1) num_microbatches_ = 1;
  current_global_batch_size_ = num_microbatches_ * per_step;
}

int64_t MicrobatchCalculator::train_iters_for_samples(int64_t train_samples) const {
  if (rampup_.empty()) return train_samples / global_batch_size_;
  MicrobatchCalculator c = *this;
  int64_t iterations = 0, consumed = 0;
  while (consumed <= rampup_[2] && consumed <= train_samples) {
    c.update(consumed);
    consumed += c.current_global_batch_size();
    ++iterations;
  }
  // Python's floor division, as Megatron's update_train_iters.
  const int64_t rest = train_samples - consumed;
  int64_t q = rest / global_batch_size_;
  if (rest % global_batch_size_ != 0 && rest < 0) --q;
  return iterations + q;
}

}  // namespace mcore::training
