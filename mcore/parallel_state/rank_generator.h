// RankGenerator: which global ranks form each tensor/pipeline/data/context/expert group, as pure
// arithmetic (no communication). Same semantics as Megatron Core's RankGenerator and
// generate_masked_orthogonal_rank_groups: the order string ("tp-cp-ep-dp-pp") lists the parallel
// axes from fastest-varying (adjacent ranks) to slowest, so
//   global_rank = tp_rank + tp * (cp_rank + cp * (ep_rank + ep * (dp_rank + dp * pp_rank)))
// and get_ranks("tp-dp") returns every group whose members differ only in their tp and dp
// coordinates, groups and members both in Megatron's order. initialize_model_parallel builds its
// process groups from these lists; tests compare them with megatron-core's own output.
#pragma once

#include <string>
#include <vector>

namespace mcore::parallel_state {

using RankGroups = std::vector<std::vector<int>>;

// All groups of the axes with mask[i] true, over a grid of parallel_size (fastest axis first).
// Group index enumerates the unmasked coordinates and position in the group the masked ones,
// both fastest axis first.
RankGroups generate_masked_orthogonal_rank_groups(int world_size,
                                                  const std::vector<int>& parallel_size,
                                                  const std::vector<bool>& mask);

class RankGenerator {
 public:
  // Axes of size 1 may be left out of `order`; they are appended (slowest). An axis of size > 1
  // missing from `order` is an error, as is ep > 1 together with cp > 1 (Megatron keeps CP in the
  // dense generator and EP in the expert generator).
  RankGenerator(int tp, int ep, int dp, int pp, int cp, const std::string& order,
                int rank_offset = 0);

  // token: one or more axis names joined by '-', in any order ("tp", "dp-cp", "tp-ep-pp").
  RankGroups get_ranks(const std::string& token) const;

  int world_size() const { return world_size_; }
  // The order after appending the omitted size-1 axes, e.g. "tp-cp-ep-dp-pp".
  const std::string& order() const { return order_; }
  int size_of(const std::string& axis) const;

 private:
  std::vector<std::string> axes_;  // in `order_`
  std::vector<int> sizes_;
  std::string order_;
  int world_size_;
  int rank_offset_;
};

// "[[0, 1], [2, 3]]", for messages.
std::string rank_groups_str(const RankGroups& groups);

// Splits "tp-cp-ep" into {"tp", "cp", "ep"}.
std::vector<std::string> split_axes(const std::string& order);

}  // namespace mcore::parallel_state
