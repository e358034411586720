// Saving and loading sharded checkpoints (Megatron Core's dist_checkpointing.save/load).
//
// Layout (Megatron-LM's directory conventions, mcore's own shard format):
//   <save>/latest_checkpointed_iteration.txt    "100" (Megatron writes the bare number)
//   <save>/iter_0000100/metadata.json           see metadata.h
//   <save>/iter_0000100/rank_00000.safetensors  the shards rank 0 wrote, one file per rank
//
// Saving is atomic. Every rank writes its file into <save>/iter_0000100.tmp/ and fsyncs it;
// rank 0 then checks that the shards tile every global tensor exactly, writes metadata.json
// (with each file's size and CRC-32C), fsyncs, renames the directory to iter_0000100, fsyncs
// <save>, and only then replaces latest_checkpointed_iteration.txt (temporary name, fsync,
// rename). A crash at any point leaves either the previous checkpoint or the new one, never a
// directory that looks complete but is not.
//
// Loading fills each requested ShardedTensor from the saved shards that overlap it, so a
// checkpoint saved under one parallel layout loads under any other. Every shard file read is
// checked against its size and checksum first; a missing, truncated or corrupt file is an error
// naming it. Loading needs no communication: each rank reads what it needs.
#pragma once

#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "mcore/comm/process_group.h"
#include "mcore/dist_checkpointing/metadata.h"
#include "mcore/dist_checkpointing/sharded_tensor.h"

namespace mcore::dist_checkpointing {

inline constexpr const char* kLatestFileName = "latest_checkpointed_iteration.txt";

std::string checkpoint_dir_name(int64_t iteration);  // "iter_0000100"
std::string get_checkpoint_dir(const std::string& save_dir, int64_t iteration);
std::string shard_file_name(int rank);  // "rank_00000.safetensors"

// What a checkpoint holds besides tensors: the layout it was saved with and the trainer's
// sections (args, scheduler, rng, consumed samples, loss scaler, ...), stored verbatim.
struct CheckpointCommon {
  nlohmann::json parallel_layout = nlohmann::json::object();
  nlohmann::json sections = nlohmann::json::object();
};

// Collective over `group` (nullptr: this process alone): every rank passes its own shards.
// `common` is taken from rank 0; per-rank state (e.g. each rank's RNG state) goes in as a
// ShardedTensor with one row per rank, so that it reshards like any other tensor.
// Returns the final checkpoint directory. On failure on any rank, every rank throws an error
// naming the ranks and their messages, and the previous checkpoint stays the latest.
std::string save_checkpoint(const std::string& save_dir, int64_t iteration,
                            const std::vector<ShardedTensor>& shards,
                            const CheckpointCommon& common = {},
                            const comm::ProcessGroupPtr& group = nullptr);

struct LoadOptions {
  // A requested key that the checkpoint lacks is an error (else listed in missing_keys).
  bool strict = true;
  // Convert when the saved dtype differs from the requested tensor's (else an error).
  bool allow_dtype_cast = false;
};
struct LoadResult {
  CheckpointMetadata metadata;
  std::vector<std::string> missing_keys;     // requested, not in the checkpoint
  std::vector<std::string> unexpected_keys;  // in the checkpoint, not requested
};

// Fills every request's `data` (in place) with its slice of the saved global tensor. Pass only
// the keys wanted (e.g. leave out optimizer state for --no-load-optim). `checkpoint_dir` is
// the iter_XXXXXXX directory itself.
LoadResult load_checkpoint(const std::string& checkpoint_dir, std::vector<ShardedTensor>& requests,
                           const LoadOptions& options = {});
// One saved tensor, whole (tools and tests).
Tensor load_global_tensor(const std::string& checkpoint_dir, const std::string& key);

// Checks that metadata.json parses and every shard file is present with the recorded size and
// checksum and holds the listed tensors; throws an Error naming the first problem.
void verify_checkpoint(const std::string& checkpoint_dir);

// The directory latest_checkpointed_iteration.txt points at, as a path under save_dir
// (<save_dir>/iter_XXXXXXX or <save_dir>/release), or nullopt when the file does not exist. A
// malformed file is an error.
std::optional<std::string> read_latest_checkpoint_dir(const std::string& save_dir);

// Auto-resume: the valid checkpoint with the highest iteration under save_dir (iter_XXXXXXX
// directories only; temporary directories and ones that fail verify_checkpoint are skipped with
// a warning), or nullopt when there is none.
struct FoundCheckpoint {
  std::string dir;
  int64_t iteration = 0;
};
std::optional<FoundCheckpoint> find_latest_valid_checkpoint(const std::string& save_dir);

// The phases of save_checkpoint, public so one process can play several ranks (tests, tools
// that convert checkpoints). What one rank wrote:
struct RankShardFile {
  int rank = 0;
  std::string file;
  uint64_t size = 0;
  uint32_t crc32c = 0;
  struct Entry {
    std::string key;
    DType dtype;
    Shape global_shape;
    ShardRecord shard;
  };
  std::vector<Entry> entries;
  nlohmann::json to_json() const;
  static RankShardFile from_json(const nlohmann::json& j);
};
// Rank 0: creates an empty <save>/iter_XXXXXXX.tmp/ (removing a stale one) and returns it.
std::string begin_save(const std::string& save_dir, int64_t iteration);
// Every rank: writes its main-replica shards to <tmp_dir>/rank_XXXXX.safetensors and fsyncs.
RankShardFile write_rank_shards(const std::string& tmp_dir, int rank,
                                const std::vector<ShardedTensor>& shards);
// Rank 0, after all ranks wrote: validates that the shards tile each tensor, writes
// metadata.json, renames the directory into place and updates the latest file.
std::string finish_save(const std::string& save_dir, int64_t iteration,
                        const std::vector<RankShardFile>& ranks, const CheckpointCommon& common);

}  // namespace mcore::dist_checkpointing
