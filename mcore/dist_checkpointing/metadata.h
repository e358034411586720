// metadata.json of an mcore checkpoint directory: what each saved tensor is (dtype, global
// shape) and where its shards lie (file, name inside the file, global offset, local shape), the
// shard files with their sizes and CRC-32C checksums, the iteration, the parallel layout it was
// saved with, and the trainer's own JSON sections (args, scheduler, RNG, consumed samples, loss
// scaler, ...). Example:
//
//   {"format": "mcore_dist_checkpoint", "version": 1, "iteration": 100, "world_size": 2,
//    "checksum": "crc32c",
//    "files": {"rank_00000.safetensors": {"rank": 0, "size": 4168, "crc32c": "1c291ca3"}, ...},
//    "tensors": {"embedding.word_embeddings.weight": {"dtype": "float32",
//        "global_shape": [512, 64],
//        "shards": [{"file": "rank_00000.safetensors", "name": "embedding.word_embeddings.weight",
//                    "global_offset": [0, 0], "local_shape": [256, 64]}, ...]}, ...},
//    "parallel_layout": {"tensor_model_parallel_size": 2, ...},
//    "sections": {"args": {...}, "scheduler": {...}, "rng": {...}, ...}}
//
// The checksum is CRC-32C (Castagnoli) of each whole shard file, as 8 lowercase hex digits.
#pragma once

#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "mcore/tensor/tensor.h"

namespace mcore::dist_checkpointing {

inline constexpr const char* kMetadataFileName = "metadata.json";
inline constexpr const char* kCheckpointFormat = "mcore_dist_checkpoint";
inline constexpr int kCheckpointFormatVersion = 1;

struct ShardRecord {
  std::string file;  // shard file inside the checkpoint directory
  std::string name;  // tensor name inside that safetensors file
  Shape global_offset;
  Shape local_shape;
};

struct TensorRecord {
  DType dtype = DType::F32;
  Shape global_shape;
  std::vector<ShardRecord> shards;
};

struct FileRecord {
  int rank = 0;
  uint64_t size = 0;
  uint32_t crc32c = 0;
};

struct CheckpointMetadata {
  int64_t iteration = 0;
  int world_size = 1;
  nlohmann::json parallel_layout = nlohmann::json::object();
  nlohmann::json sections = nlohmann::json::object();
  std::map<std::string, TensorRecord> tensors;
  std::map<std::string, FileRecord> files;

  nlohmann::json to_json() const;
  // Checks structure and consistency (every shard's file listed, shapes agree, shards inside
  // the global shape); `where` names the source in errors.
  static CheckpointMetadata from_json(const nlohmann::json& j, const std::string& where);
  // <checkpoint_dir>/metadata.json; a missing or unparsable file is an error naming it.
  static CheckpointMetadata read(const std::string& checkpoint_dir);
};

std::string crc32c_hex(uint32_t crc);

}  // namespace mcore::dist_checkpointing
