// ShardedTensor (Megatron Core's name): one rank's piece of a global tensor, as a checkpoint
// sees it. `data` is the local tensor, placed at `global_offset` inside a tensor of
// `global_shape`; `key` names the global tensor independently of the parallel layout (e.g.
// "decoder.layers.3.mlp.linear_fc1.weight" with global layer numbers), so a checkpoint saved
// under one layout can be loaded under any other. Several ranks may hold the same piece (data
// parallel replicas): only the one with replica_id 0 writes it.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "mcore/base/error.h"
#include "mcore/tensor/tensor.h"

namespace mcore::dist_checkpointing {

// Megatron's rank offset tuple: along `axis`, this rank holds part `rank` of `fragments`
// equal parts.
struct RankOffset {
  int64_t axis;
  int64_t rank;
  int64_t fragments;
};

struct ShardedTensor {
  std::string key;
  Tensor data;
  Shape global_shape;
  Shape global_offset;
  int64_t replica_id = 0;

  Shape local_shape() const { return data.shape(); }
  bool is_main_replica() const { return replica_id == 0; }

  // The whole tensor, unsharded (every rank holds it; pass replica_id = rank to save it once).
  static ShardedTensor whole(std::string key, Tensor data, int64_t replica_id = 0) {
    ShardedTensor s{std::move(key), data, data.shape(), Shape(data.shape().size(), 0), replica_id};
    return s;
  }
  // ShardedTensor.from_rank_offsets: the global shape multiplies the local size along each
  // sharded axis by its fragment count; the offset is rank * local size.
  static ShardedTensor from_rank_offsets(std::string key, Tensor data,
                                         const std::vector<RankOffset>& rank_offsets,
                                         int64_t replica_id = 0) {
    ShardedTensor s = whole(std::move(key), std::move(data), replica_id);
    for (const RankOffset& r : rank_offsets) {
      MCORE_CHECK(r.axis >= 0 && r.axis < static_cast<int64_t>(s.global_shape.size()) &&
                  r.fragments >= 1 && r.rank >= 0 && r.rank < r.fragments)
          << "ShardedTensor::from_rank_offsets(\"" << s.key << "\"): bad rank offset (axis "
          << r.axis << ", rank " << r.rank << ", fragments " << r.fragments
          << ") for a local tensor of shape " << shape_str(s.data.shape());
      s.global_shape[r.axis] = s.data.shape()[r.axis] * r.fragments;
      s.global_offset[r.axis] = s.data.shape()[r.axis] * r.rank;
    }
    return s;
  }

  // Dimensions agree and the shard lies inside the global tensor; errors name the key.
  void validate() const {
    MCORE_CHECK(!key.empty()) << "ShardedTensor with an empty key";
    MCORE_CHECK(data.defined()) << "ShardedTensor \"" << key << "\" has no data";
    const Shape& local = data.shape();
    MCORE_CHECK(global_shape.size() == local.size() && global_offset.size() == local.size())
        << "ShardedTensor \"" << key << "\": local shape " << shape_str(local) << ", global shape "
        << shape_str(global_shape) << " and global offset " << shape_str(global_offset)
        << " must have the same number of dimensions";
    for (size_t d = 0; d < local.size(); ++d) {
      MCORE_CHECK(global_offset[d] >= 0 && global_offset[d] + local[d] <= global_shape[d])
          << "ShardedTensor \"" << key << "\": local shape " << shape_str(local)
          << " at global offset " << shape_str(global_offset)
          << " does not fit in the global shape " << shape_str(global_shape);
    }
  }
};

}  // namespace mcore::dist_checkpointing
