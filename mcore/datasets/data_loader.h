// The pretraining data loader: Megatron's MegatronPretrainingSampler (walk the samples from
// `consumed_samples` on, cut them into groups of micro_batch_size x data_parallel_size, give
// each data-parallel rank its contiguous micro-batch slice of each group) plus a background
// thread that builds the next batches while the current step runs. Because the order depends
// only on consumed_samples, a run resumed with the checkpoint's consumed-sample count sees
// exactly the samples an uninterrupted run would have seen next.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <exception>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "mcore/datasets/gpt_dataset.h"

namespace mcore::datasets {

class MegatronPretrainingSampler {
 public:
  MegatronPretrainingSampler(int64_t total_samples, int64_t consumed_samples,
                             int64_t micro_batch_size, int64_t data_parallel_rank,
                             int64_t data_parallel_size, bool drop_last = true);
  // This rank's next micro-batch of sample indices; nullopt when the samples run out.
  std::optional<std::vector<int64_t>> next();

 private:
  int64_t total_, next_idx_, mbs_, rank_, mbs_times_dp_;
  bool drop_last_;
  bool done_ = false;
};

// A micro-batch: [micro_batch_size, seq] tensors, attention_mask [mbs, 1, seq, seq] if the
// dataset makes one.
struct GPTBatch {
  Tensor tokens, labels, loss_mask, position_ids, attention_mask;
  std::vector<int64_t> sample_indices;  // dataset indices of the rows, for logging and tests
};

// Stacks samples into a batch (all of one sequence length).
GPTBatch collate(const std::vector<GPTSample>& samples);

class DataLoader {
 public:
  // `prefetch`: how many micro-batches the background thread keeps ready (0: build on demand
  // in next(), no thread).
  DataLoader(std::shared_ptr<const SampleDataset> dataset, int64_t consumed_samples,
             int64_t micro_batch_size, int64_t data_parallel_rank, int64_t data_parallel_size,
             int prefetch = 2, bool drop_last = true);
  ~DataLoader();
  DataLoader(const DataLoader&) = delete;
  DataLoader& operator=(const DataLoader&) = delete;

  // The next micro-batch, or nullopt at the end of the data. An error raised while building a
  // batch in the background is rethrown here.
  std::optional<GPTBatch> next();

 private:
  std::optional<GPTBatch> produce();
  void worker();

  std::shared_ptr<const SampleDataset> dataset_;
  MegatronPretrainingSampler sampler_;
  int prefetch_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::optional<GPTBatch>> queue_;  // nullopt marks the end
  std::exception_ptr error_;
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace mcore::datasets
