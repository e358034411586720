#include "mcore/datasets/data_loader.h"

#include <cstring>

#include "mcore/base/error.h"
#include "mcore/tensor/factory.h"

namespace mcore::datasets {

MegatronPretrainingSampler::MegatronPretrainingSampler(int64_t total_samples,
                                                       int64_t consumed_samples,
                                                       int64_t micro_batch_size,
                                                       int64_t data_parallel_rank,
                                                       int64_t data_parallel_size, bool drop_last)
    : total_(total_samples),
      next_idx_(consumed_samples),
      mbs_(micro_batch_size),
      rank_(data_parallel_rank),
      mbs_times_dp_(micro_batch_size * data_parallel_size),
      drop_last_(drop_last) {
  MCORE_CHECK(total_samples > 0) << "no sample to consume: " << total_samples;
  MCORE_CHECK(consumed_samples >= 0 && consumed_samples < total_samples)
      << "no samples left to consume: consumed " << consumed_samples << " of " << total_samples
      << " (the run has used the whole dataset; request more samples when building it)";
  MCORE_CHECK(micro_batch_size > 0)
      << "micro_batch_size must be positive, got " << micro_batch_size;
  MCORE_CHECK(data_parallel_size > 0) << "data_parallel_size must be positive";
  MCORE_CHECK(data_parallel_rank >= 0 && data_parallel_rank < data_parallel_size)
      << "data_parallel_rank should be smaller than data size: " << data_parallel_rank << ", "
      << data_parallel_size;
}

std::optional<std::vector<int64_t>> MegatronPretrainingSampler::next() {
  if (done_) return std::nullopt;
  const int64_t start = next_idx_ + rank_ * mbs_;
  if (next_idx_ + mbs_times_dp_ <= total_) {
    std::vector<int64_t> out(static_cast<size_t>(mbs_));
    for (int64_t i = 0; i < mbs_; ++i) out[i] = start + i;
    next_idx_ += mbs_times_dp_;
    return out;
  }
  // The last, partial group: dropped, or this rank's part of it (Python slicing, maybe empty).
  done_ = true;
  if (drop_last_ || next_idx_ >= total_) return std::nullopt;
  std::vector<int64_t> out;
  for (int64_t i = start; i < std::min(start + mbs_, total_); ++i) out.push_back(i);
  next_idx_ = total_;
  return out;
}

GPTBatch collate(const std::vector<GPTSample>& samples) {
  MCORE_CHECK(!samples.empty()) << "collate: empty batch";
  const int64_t b = static_cast<int64_t>(samples.size());
  const int64_t seq = samples[0].tokens.numel();
  GPTBatch batch;
  batch.tokens = empty({b, seq}, DType::I64);
  batch.labels = empty({b, seq}, DType::I64);
  batch.loss_mask = empty({b, seq}, DType::F32);
  batch.position_ids = empty({b, seq}, DType::I64);
  const bool with_mask = samples[0].attention_mask.defined();
  if (with_mask) batch.attention_mask = empty({b, 1, seq, seq}, DType::BOOL);
  auto copy_row = [](const Tensor& src, Tensor& dst, int64_t row, int64_t n) {
    MCORE_CHECK(src.numel() == n) << "collate: samples of different lengths (" << src.numel()
                                  << " vs " << n << ")";
    std::memcpy(
        static_cast<char*>(dst.data_ptr()) + row * n * static_cast<int64_t>(dst.element_size()),
        src.data_ptr(), static_cast<size_t>(n) * dst.element_size());
  };
  for (int64_t i = 0; i < b; ++i) {
    const GPTSample& s = samples[static_cast<size_t>(i)];
    copy_row(s.tokens, batch.tokens, i, seq);
    copy_row(s.labels, batch.labels, i, seq);
    copy_row(s.loss_mask, batch.loss_mask, i, seq);
    copy_row(s.position_ids, batch.position_ids, i, seq);
    if (with_mask) copy_row(s.attention_mask, batch.attention_mask, i, seq * seq);
  }
  return batch;
}

DataLoader::DataLoader(std::shared_ptr<const SampleDataset> dataset, int64_t consumed_samples,
                       int64_t micro_batch_size, int64_t data_parallel_rank,
                       int64_t data_parallel_size, int prefetch, bool drop_last)
    : dataset_(std::move(dataset)),
      sampler_(dataset_ ? dataset_->size() : 0, consumed_samples, micro_batch_size,
               data_parallel_rank, data_parallel_size, drop_last),
      prefetch_(prefetch) {
  if (prefetch_ > 0) thread_ = std::thread([this] { worker(); });
}

DataLoader::~DataLoader() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

std::optional<GPTBatch> DataLoader::produce() {
  std::optional<std::vector<int64_t>> idx = sampler_.next();
  if (!idx || idx->empty()) return std::nullopt;
  std::vector<GPTSample> samples;
  samples.reserve(idx->size());
  for (int64_t i : *idx) samples.push_back(dataset_->get(i));
  GPTBatch batch = collate(samples);
  batch.sample_indices = std::move(*idx);
  return batch;
}

void DataLoader::worker() {
  while (true) {
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] { return stop_ || static_cast<int>(queue_.size()) < prefetch_; });
      if (stop_) return;
    }
    std::optional<GPTBatch> batch;
    try {
      batch = produce();
    } catch (...) {
      std::lock_guard<std::mutex> lock(mu_);
      error_ = std::current_exception();
      cv_.notify_all();
      return;
    }
    std::lock_guard<std::mutex> lock(mu_);
    const bool end = !batch.has_value();
    queue_.push_back(std::move(batch));
    cv_.notify_all();
    if (end) return;
  }
}

std::optional<GPTBatch> DataLoader::next() {
  if (prefetch_ <= 0) return produce();
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait(lock, [&] { return !queue_.empty() || error_; });
  if (queue_.empty() && error_) std::rethrow_exception(error_);
  std::optional<GPTBatch> batch = std::move(queue_.front());
  if (batch) queue_.pop_front();  // keep the end marker for later calls
  cv_.notify_all();
  return batch;
}

}  // namespace mcore::datasets
