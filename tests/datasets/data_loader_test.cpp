// The pretraining sampler and prefetching loader: Megatron's sample order per data-parallel
// rank, batches equal to the dataset's samples, and resume at consumed_samples = N continuing
// with exactly the samples an uninterrupted run gives next.
#include <gtest/gtest.h>

#include <unistd.h>

#include <filesystem>

#include "mcore/datasets/blended_megatron_dataset_builder.h"
#include "mcore/datasets/data_loader.h"
#include "mcore/datasets/indexed_dataset.h"
#include "tests/common/test_util.h"

namespace mcore::datasets {
namespace {

namespace fs = std::filesystem;

// Python's MegatronPretrainingSampler.__iter__, written out as the spec.
std::vector<std::vector<int64_t>> python_sampler(int64_t total, int64_t consumed, int64_t mbs,
                                                 int64_t rank, int64_t dp, bool drop_last) {
  std::vector<std::vector<int64_t>> out;
  std::vector<int64_t> batch;
  for (int64_t idx = consumed; idx < total; ++idx) {
    batch.push_back(idx);
    if (static_cast<int64_t>(batch.size()) == mbs * dp) {
      out.emplace_back(batch.begin() + rank * mbs, batch.begin() + (rank + 1) * mbs);
      batch.clear();
    }
  }
  if (!batch.empty() && !drop_last) {
    const int64_t b = std::min<int64_t>(rank * mbs, static_cast<int64_t>(batch.size()));
    const int64_t e = std::min<int64_t>((rank + 1) * mbs, static_cast<int64_t>(batch.size()));
    out.emplace_back(batch.begin() + b, batch.begin() + e);  // may be empty, as in Python
  }
  return out;
}

TEST(MegatronPretrainingSampler, MatchesMegatronOrder) {
  for (int64_t total : {1, 7, 24, 25, 103})
    for (int64_t consumed : {0, 3, 6})
      for (int64_t mbs : {1, 2, 3})
        for (int64_t dp : {1, 2, 4})
          for (bool drop : {true, false})
            for (int64_t rank = 0; rank < dp; ++rank) {
              if (consumed >= total) continue;
              MegatronPretrainingSampler s(total, consumed, mbs, rank, dp, drop);
              std::vector<std::vector<int64_t>> got;
              while (auto b = s.next()) got.push_back(*b);
              EXPECT_EQ(got, python_sampler(total, consumed, mbs, rank, dp, drop))
                  << total << " " << consumed << " " << mbs << " " << rank << "/" << dp;
            }
  EXPECT_THROW(MegatronPretrainingSampler(10, 10, 1, 0, 1), Error);
  EXPECT_THROW(MegatronPretrainingSampler(10, 0, 1, 2, 2), Error);
  EXPECT_THROW(MegatronPretrainingSampler(10, 0, 0, 0, 1), Error);
}

class DataLoaderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("mcore_loader_" + std::to_string(::getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    const std::string prefix = (dir_ / "data").string();
    IndexedDatasetBuilder b(get_bin_path(prefix), DType::U16);
    uint64_t x = 12345;
    for (int d = 0; d < 50; ++d) {
      x = x * 6364136223846793005ull + 1442695040888963407ull;
      std::vector<int32_t> toks(static_cast<size_t>(3 + (x >> 59)));
      for (size_t i = 0; i < toks.size(); ++i)
        toks[i] = static_cast<int32_t>(1 + (x >> (i % 40)) % 500);
      toks.back() = 0;
      b.add_item(toks);
      b.end_document();
    }
    b.finalize(get_idx_path(prefix));
    GPTDatasetConfig cfg;
    cfg.sequence_length = 8;
    cfg.random_seed = 99;
    cfg.blend = Blend{{prefix}, std::nullopt};
    cfg.split = "1,0,0";
    cfg.path_to_cache = (dir_ / "cache").string();
    cfg.eod_token_id = 0;
    cfg.create_attention_mask = true;
    dataset_ = BlendedMegatronDatasetBuilder({97, 0, 0}, cfg).build()[0];
  }
  void TearDown() override { fs::remove_all(dir_); }

  // Every row of every batch of a loader (until the end or `limit` batches).
  static std::vector<int64_t> drain(DataLoader& loader, int limit,
                                    std::vector<GPTBatch>* batches = nullptr) {
    std::vector<int64_t> rows;
    for (int i = 0; i < limit; ++i) {
      std::optional<GPTBatch> b = loader.next();
      if (!b) break;
      rows.insert(rows.end(), b->sample_indices.begin(), b->sample_indices.end());
      if (batches) batches->push_back(std::move(*b));
    }
    return rows;
  }

  fs::path dir_;
  std::shared_ptr<const SampleDataset> dataset_;
};

TEST_F(DataLoaderTest, BatchesHoldTheDatasetSamples) {
  ASSERT_GE(dataset_->size(), 97);
  DataLoader loader(dataset_, 0, 4, 1, 2, /*prefetch=*/3);
  std::vector<GPTBatch> batches;
  std::vector<int64_t> rows = drain(loader, 5, &batches);
  ASSERT_EQ(batches.size(), 5u);
  EXPECT_EQ(rows[0], 4);  // rank 1 of 2 takes samples 4..7 of the first group of 8
  for (const GPTBatch& b : batches) {
    EXPECT_EQ(b.tokens.shape(), (Shape{4, 8}));
    EXPECT_EQ(b.attention_mask.shape(), (Shape{4, 1, 8, 8}));
    for (int64_t r = 0; r < 4; ++r) {
      GPTSample s = dataset_->get(b.sample_indices[r]);
      EXPECT_EQ(to_vector<int64_t>(b.tokens.select(0, r)), to_vector<int64_t>(s.tokens));
      EXPECT_EQ(to_vector<int64_t>(b.labels.select(0, r)), to_vector<int64_t>(s.labels));
      EXPECT_EQ(to_vector<float>(b.loss_mask.select(0, r)), to_vector<float>(s.loss_mask));
      EXPECT_EQ(to_vector<int64_t>(b.position_ids.select(0, r)),
                to_vector<int64_t>(s.position_ids));
    }
  }
}

TEST_F(DataLoaderTest, ResumeContinuesWithTheNextSamples) {
  const int64_t mbs = 2, dp = 2, global_batch = 8;  // 2 micro-batches per step per rank
  for (int64_t rank = 0; rank < dp; ++rank) {
    for (int prefetch : {0, 2}) {
      DataLoader full(dataset_, 0, mbs, rank, dp, prefetch);
      const std::vector<int64_t> all = drain(full, 1000);
      // Consume 3 steps, "crash", restart at consumed = 3 * global_batch.
      const int64_t steps = 3, per_step = global_batch / (mbs * dp);
      DataLoader first(dataset_, 0, mbs, rank, dp, prefetch);
      std::vector<int64_t> seen = drain(first, static_cast<int>(steps * per_step));
      DataLoader resumed(dataset_, steps * global_batch, mbs, rank, dp, prefetch);
      std::vector<int64_t> rest = drain(resumed, 1000);
      seen.insert(seen.end(), rest.begin(), rest.end());
      EXPECT_EQ(seen, all) << "rank " << rank << " prefetch " << prefetch;
      EXPECT_EQ(rest.front(), all[static_cast<size_t>(steps * per_step * mbs)]);
      // The end marker stays: further calls keep returning nothing.
      EXPECT_FALSE(resumed.next().has_value());
    }
  }
  // Every sample goes to exactly one rank.
  std::vector<int64_t> union_rows;
  for (int64_t rank = 0; rank < dp; ++rank) {
    DataLoader l(dataset_, 0, mbs, rank, dp);
    auto r = drain(l, 1000);
    union_rows.insert(union_rows.end(), r.begin(), r.end());
  }
  std::sort(union_rows.begin(), union_rows.end());
  for (size_t i = 0; i < union_rows.size(); ++i) EXPECT_EQ(union_rows[i], static_cast<int64_t>(i));
  EXPECT_EQ(static_cast<int64_t>(union_rows.size()), dataset_->size() / (mbs * dp) * (mbs * dp));
}

// A failing sample read surfaces in next() as the original error, not a hang or a crash.
class ThrowingDataset : public SampleDataset {
 public:
  int64_t size() const override { return 10; }
  GPTSample get(int64_t idx) const override {
    MCORE_CHECK(idx < 5) << "sample " << idx << " is unreadable";
    GPTSample s;
    s.tokens = zeros({4}, DType::I64);
    s.labels = zeros({4}, DType::I64);
    s.loss_mask = ones({4}, DType::F32);
    s.position_ids = arange(4);
    return s;
  }
  Split split() const override { return Split::kTrain; }
  const PyJson& unique_identifiers() const override { return id_; }
  PyJson id_;
};

TEST(DataLoaderErrors, BackgroundErrorIsRethrown) {
  DataLoader loader(std::make_shared<ThrowingDataset>(), 0, 2, 0, 1, 2);
  EXPECT_TRUE(loader.next().has_value());
  EXPECT_TRUE(loader.next().has_value());
  try {
    loader.next();
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(e.message().find("sample 5 is unreadable"), std::string::npos) << e.message();
  }
}

}  // namespace
}  // namespace mcore::datasets
