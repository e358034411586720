// Checkpoints across real ranks (mpirun -np 2/4): every rank writes its own shard file into
// the temporary directory, rank 0 publishes; the checkpoint then loads under another split of
// the same tensors, and a failure on one rank makes every rank throw the same error.
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>

#include "mcore/comm/distributed.h"
#include "mcore/dist_checkpointing/checkpoint.h"
#include "mcore/tensor/factory.h"
#include "tests/common/test_util.h"

namespace mcore::testing {
namespace {

namespace dc = dist_checkpointing;
namespace fs = std::filesystem;
using dc::ShardedTensor;

// The same fresh scratch path on every rank: rank 0's pid and clock, broadcast (a recycled
// pid alone could meet a directory left by an earlier run).
fs::path shared_dir(const std::string& name) {
  const auto now = std::chrono::steady_clock::now().time_since_epoch().count();
  Tensor id = from_vector<int64_t>({static_cast<int64_t>(::getpid()), static_cast<int64_t>(now)});
  comm::world()->broadcast(id, 0);
  const std::vector<int64_t> v = to_vector<int64_t>(id);
  return fs::temp_directory_path() /
         ("mcore_dist_" + name + "_" + std::to_string(v[0]) + "_" + std::to_string(v[1]));
}

Tensor global_tensor(const Shape& shape, DType dtype, int salt) {
  Tensor t = empty(shape, DType::F64);
  double* p = t.data<double>();
  for (int64_t i = 0; i < t.numel(); ++i) p[i] = static_cast<double>((i * 5 + salt) % 199) - 90;
  return t.to(dtype);
}

Tensor rows(const Tensor& g, int64_t begin, int64_t n) {
  return g.narrow(0, begin, n).contiguous();
}

TEST(DistCheckpoint, SaveUnderOneSplitLoadUnderAnother) {
  const int rank = comm::get_rank(), world = comm::get_world_size();
  const fs::path dir = shared_dir("reshard");
  if (rank == 0) fs::remove_all(dir);
  comm::world()->barrier();

  // Saved: "w" split by rows across ranks, "emb" split by columns, "norm" replicated.
  const int64_t n = 3 * world + 1;  // uneven pieces below
  Tensor w = global_tensor({4 * world, 6}, DType::F32, 1);
  Tensor emb = global_tensor({5, 2 * world}, DType::BF16, 2);
  Tensor norm = global_tensor({n}, DType::F32, 3);
  std::vector<ShardedTensor> shards{
      ShardedTensor::from_rank_offsets("w", rows(w, 4 * rank, 4), {{0, rank, world}}),
      ShardedTensor::from_rank_offsets("emb", emb.narrow(1, 2 * rank, 2).contiguous(),
                                       {{1, rank, world}}),
      ShardedTensor::whole("norm", norm, /*replica_id=*/rank)};
  dc::CheckpointCommon common;
  common.parallel_layout = {{"data_parallel_size", world}};
  common.sections["rng"] = {{"seed", 1234}};
  const std::string ckpt = dc::save_checkpoint(dir.string(), 200, shards, common, comm::world());
  EXPECT_EQ(ckpt, (dir / "iter_0000200").string());
  // When save_checkpoint returns, the checkpoint is complete for every rank.
  EXPECT_TRUE(fs::exists(dir / "latest_checkpointed_iteration.txt"));
  EXPECT_FALSE(fs::exists(dir / "iter_0000200.tmp"));
  for (int r = 0; r < world; ++r) EXPECT_TRUE(fs::exists(fs::path(ckpt) / dc::shard_file_name(r)));
  dc::verify_checkpoint(ckpt);
  auto found = dc::find_latest_valid_checkpoint(dir.string());
  ASSERT_TRUE(found.has_value());
  EXPECT_EQ(found->iteration, 200);

  // Loaded: ranks in reverse order, "w" now by columns, "emb" by rows (uneven), "norm" a slice.
  const int me = world - 1 - rank;
  const int64_t emb_rows = me == world - 1 ? 5 - (world - 1) * (5 / world) : 5 / world;
  std::vector<ShardedTensor> req{
      {"w", zeros({4 * world, 3}), w.shape(), {0, me == 0 ? 0 : 3}},
      {"emb", zeros({emb_rows, 2 * world}, DType::BF16), emb.shape(), {me * (5 / world), 0}},
      {"norm", zeros({n - me}), norm.shape(), {me}}};
  if (world > 2) req[0] = {"w", zeros({4 * world, 2}), w.shape(), {0, 2 * (me % 3)}};
  auto res = dc::load_checkpoint(ckpt, req);
  EXPECT_TENSOR_CLOSE(req[0].data, w.narrow(1, req[0].global_offset[1], req[0].data.size(1)), 0, 0);
  EXPECT_TENSOR_CLOSE(req[1].data, emb.narrow(0, req[1].global_offset[0], emb_rows), 0, 0);
  EXPECT_TENSOR_CLOSE(req[2].data, norm.narrow(0, me, n - me), 0, 0);
  EXPECT_EQ(res.metadata.world_size, world);
  EXPECT_EQ(res.metadata.sections["rng"]["seed"], 1234);
  EXPECT_EQ(res.metadata.parallel_layout["data_parallel_size"], world);

  comm::world()->barrier();
  if (rank == 0) fs::remove_all(dir);
}

TEST(DistCheckpoint, AFailureOnOneRankFailsTheSaveOnEveryRank) {
  const int rank = comm::get_rank(), world = comm::get_world_size();
  const fs::path dir = shared_dir("fail");
  if (rank == 0) fs::remove_all(dir);
  comm::world()->barrier();
  Tensor w = global_tensor({2 * world, 3}, DType::F32, 4);
  // Every rank marks the whole tensor as its main replica: overlapping shards, found by rank 0.
  try {
    dc::save_checkpoint(dir.string(), 1, {ShardedTensor::whole("w", w)}, {}, comm::world());
    ADD_FAILURE() << "the save should have failed";
  } catch (const Error& e) {
    EXPECT_NE(e.message().find("[rank 0]"), std::string::npos) << e.message();
    EXPECT_NE(e.message().find("overlaps"), std::string::npos) << e.message();
  }
  // The last rank passes a shard that does not fit its global shape: found while writing.
  std::vector<ShardedTensor> mine{
      ShardedTensor::from_rank_offsets("w", rows(w, 2 * rank, 2), {{0, rank, world}})};
  if (rank == world - 1) mine[0].global_offset[0] = 2 * world;
  try {
    dc::save_checkpoint(dir.string(), 2, mine, {}, comm::world());
    ADD_FAILURE() << "the save should have failed";
  } catch (const Error& e) {
    EXPECT_NE(e.message().find("[rank " + std::to_string(world - 1) + "]"), std::string::npos)
        << e.message();
    EXPECT_NE(e.message().find("does not fit"), std::string::npos) << e.message();
  }
  EXPECT_FALSE(dc::find_latest_valid_checkpoint(dir.string()).has_value());
  EXPECT_FALSE(fs::exists(dir / "latest_checkpointed_iteration.txt"));
  comm::world()->barrier();
  if (rank == 0) fs::remove_all(dir);
}

}  // namespace
}  // namespace mcore::testing
