// parallel_state under MPI (4 and 8 ranks): for several layouts, every accessor (ranks, sizes,
// global ranks, pipeline neighbours, stages, embedding membership) against the lists
// RankGenerator gives, collectives inside the tensor, data and expert groups, and
// re-initialization after destroy_model_parallel.
#include <gtest/gtest.h>

#include <algorithm>
#include <numeric>

#include "mcore/base/error.h"
#include "mcore/comm/distributed.h"
#include "mcore/parallel_state/parallel_state.h"
#include "mcore/parallel_state/rank_generator.h"
#include "mcore/tensor/factory.h"

namespace mcore::parallel_state {
namespace {

// My group among `groups` and my position in it.
struct Mine {
  std::vector<int> ranks;
  int index = -1;
};
Mine find_mine(const RankGroups& groups, int rank) {
  for (const auto& g : groups) {
    auto it = std::find(g.begin(), g.end(), rank);
    if (it != g.end()) return {g, static_cast<int>(it - g.begin())};
  }
  return {};
}

// Checks a group object against the list RankGenerator produced for it.
void expect_group(const char* what, const ProcessGroupPtr& g, const RankGroups& groups, int rank) {
  SCOPED_TRACE(what);
  Mine m = find_mine(groups, rank);
  ASSERT_GE(m.index, 0) << "rank " << rank << " in no " << what << " group";
  ASSERT_TRUE(g);
  EXPECT_EQ(g->size(), static_cast<int>(m.ranks.size()));
  EXPECT_EQ(g->rank(), m.index);
  EXPECT_EQ(g->global_ranks(), m.ranks);
}

// all_reduce of (global rank + 1) in each group: the sum of its members' (rank + 1).
void expect_all_reduce(const char* what, const ProcessGroupPtr& g, int rank) {
  SCOPED_TRACE(what);
  Tensor t = full({3}, rank + 1.0, DType::F32);
  g->all_reduce(t);
  double expected = 0;
  for (int r : g->global_ranks()) expected += r + 1;
  for (float v : to_vector<float>(t)) EXPECT_EQ(v, expected);
  // Async form, and max.
  Tensor m = full({2}, static_cast<double>(rank), DType::F32);
  auto work = g->all_reduce_async(m, comm::ReduceOp::kMax);
  work->wait();
  const int max_rank = *std::max_element(g->global_ranks().begin(), g->global_ranks().end());
  for (float v : to_vector<float>(m)) EXPECT_EQ(v, max_rank);
}

void check_layout(const ModelParallelOptions& o) {
  const int world = comm::get_world_size();
  const int rank = comm::get_rank();
  const int tp = o.tensor_model_parallel_size, pp = o.pipeline_model_parallel_size;
  const int cp = o.context_parallel_size, ep = o.expert_model_parallel_size;
  const int etp = o.expert_tensor_parallel_size.value_or(tp);
  const int dp = world / (tp * pp * cp), edp = world / (etp * ep * pp);
  SCOPED_TRACE("world " + std::to_string(world) + " tp " + std::to_string(tp) + " pp " +
               std::to_string(pp) + " cp " + std::to_string(cp) + " ep " + std::to_string(ep) +
               " etp " + std::to_string(etp) + " order " + o.order);

  ASSERT_FALSE(model_parallel_is_initialized());
  initialize_model_parallel(o);
  ASSERT_TRUE(model_parallel_is_initialized());

  RankGenerator dense(tp, 1, dp, pp, cp, o.order);
  RankGenerator expert(etp, ep, edp, pp, 1, o.order);

  expect_group("tensor", get_tensor_model_parallel_group(), dense.get_ranks("tp"), rank);
  expect_group("pipeline", get_pipeline_model_parallel_group(), dense.get_ranks("pp"), rank);
  expect_group("data", get_data_parallel_group(), dense.get_ranks("dp"), rank);
  expect_group("data-cp", get_data_parallel_group(true), dense.get_ranks("dp-cp"), rank);
  expect_group("context", get_context_parallel_group(), dense.get_ranks("cp"), rank);
  expect_group("model", get_model_parallel_group(), dense.get_ranks("tp-pp"), rank);
  expect_group("tensor-data", get_tensor_and_data_parallel_group(), dense.get_ranks("tp-dp"), rank);
  expect_group("tensor-data-cp", get_tensor_and_data_parallel_group(true),
               dense.get_ranks("tp-dp-cp"), rank);
  expect_group("tensor-context", get_tensor_and_context_parallel_group(), dense.get_ranks("tp-cp"),
               rank);
  expect_group("expert", get_expert_model_parallel_group(), expert.get_ranks("ep"), rank);
  expect_group("expert-tensor", get_expert_tensor_parallel_group(), expert.get_ranks("tp"), rank);
  expect_group("expert-tensor-model", get_expert_tensor_and_model_parallel_group(),
               expert.get_ranks("tp-ep"), rank);
  expect_group("expert-tensor-model-pipeline", get_expert_tensor_model_pipeline_parallel_group(),
               expert.get_ranks("tp-ep-pp"), rank);
  expect_group("expert-data", get_expert_data_parallel_group(), expert.get_ranks("dp"), rank);

  EXPECT_EQ(get_tensor_model_parallel_group()->name(), "tensor");
  EXPECT_EQ(get_data_parallel_group()->name(), "data");
  EXPECT_EQ(get_pipeline_model_parallel_group()->name(), "pipeline");

  // Ranks and sizes.
  Mine tpm = find_mine(dense.get_ranks("tp"), rank), ppm = find_mine(dense.get_ranks("pp"), rank);
  Mine dpm = find_mine(dense.get_ranks("dp"), rank), cpm = find_mine(dense.get_ranks("cp"), rank);
  Mine dpcpm = find_mine(dense.get_ranks("dp-cp"), rank);
  Mine epm = find_mine(expert.get_ranks("ep"), rank);
  Mine etpm = find_mine(expert.get_ranks("tp"), rank);
  Mine edpm = find_mine(expert.get_ranks("dp"), rank);
  EXPECT_EQ(get_tensor_model_parallel_rank(), tpm.index);
  EXPECT_EQ(get_tensor_model_parallel_world_size(), tp);
  EXPECT_EQ(get_pipeline_model_parallel_rank(), ppm.index);
  EXPECT_EQ(get_pipeline_model_parallel_world_size(), pp);
  EXPECT_EQ(get_data_parallel_rank(), dpm.index);
  EXPECT_EQ(get_data_parallel_world_size(), dp);
  EXPECT_EQ(get_data_parallel_rank(true), dpcpm.index);
  EXPECT_EQ(get_data_parallel_world_size(true), dp * cp);
  EXPECT_EQ(get_context_parallel_rank(), cpm.index);
  EXPECT_EQ(get_context_parallel_world_size(), cp);
  EXPECT_EQ(get_tensor_and_context_parallel_world_size(), tp * cp);
  EXPECT_EQ(get_expert_model_parallel_rank(), epm.index);
  EXPECT_EQ(get_expert_model_parallel_world_size(), ep);
  EXPECT_EQ(get_expert_tensor_parallel_rank(), etpm.index);
  EXPECT_EQ(get_expert_tensor_parallel_world_size(), etp);
  EXPECT_EQ(get_expert_tensor_and_model_parallel_world_size(), etp * ep);
  EXPECT_EQ(get_expert_data_parallel_rank(), edpm.index);
  EXPECT_EQ(get_expert_data_parallel_world_size(), edp);

  // Global ranks.
  EXPECT_EQ(get_tensor_model_parallel_src_rank(), tpm.ranks.front());
  EXPECT_EQ(get_data_parallel_src_rank(), dpm.ranks.front());
  EXPECT_EQ(get_data_parallel_src_rank(true), dpcpm.ranks.front());
  EXPECT_EQ(get_model_parallel_src_rank(), find_mine(dense.get_ranks("tp-pp"), rank).ranks.front());
  EXPECT_EQ(get_expert_model_parallel_src_rank(), epm.ranks.front());
  EXPECT_EQ(get_context_parallel_global_ranks(), cpm.ranks);
  EXPECT_EQ(get_pipeline_model_parallel_first_rank(), ppm.ranks.front());
  EXPECT_EQ(get_pipeline_model_parallel_last_rank(), ppm.ranks.back());
  EXPECT_EQ(get_pipeline_model_parallel_next_rank(), ppm.ranks[(ppm.index + 1) % pp]);
  EXPECT_EQ(get_pipeline_model_parallel_prev_rank(), ppm.ranks[(ppm.index + pp - 1) % pp]);

  // Stages and embeddings.
  const bool first = ppm.index == 0, last = ppm.index == pp - 1;
  EXPECT_EQ(is_pipeline_first_stage(), first);
  EXPECT_EQ(is_pipeline_last_stage(), last);
  EXPECT_EQ(is_rank_in_embedding_group(), first || last);
  EXPECT_EQ(is_rank_in_position_embedding_group(), first);
  if (first || last) {
    std::vector<int> emb = {ppm.ranks.front()};
    if (pp > 1) emb.push_back(ppm.ranks.back());
    EXPECT_EQ(get_embedding_group()->global_ranks(), emb);
  } else {
    EXPECT_THROW(get_embedding_group(), Error);
  }
  if (first) {
    EXPECT_EQ(get_position_embedding_group()->global_ranks(), std::vector<int>{ppm.ranks.front()});
  }

  if (o.virtual_pipeline_model_parallel_size) {
    const int vpp = *o.virtual_pipeline_model_parallel_size;
    EXPECT_EQ(get_virtual_pipeline_model_parallel_world_size(), vpp);
    EXPECT_EQ(get_virtual_pipeline_model_parallel_rank(), 0);
    EXPECT_EQ(is_pipeline_first_stage(/*ignore_virtual=*/false), first);
    EXPECT_FALSE(is_pipeline_last_stage(false));  // virtual stage 0 is never the last of vpp > 1
    set_virtual_pipeline_model_parallel_rank(vpp - 1);
    EXPECT_FALSE(is_pipeline_first_stage(false));
    EXPECT_EQ(is_pipeline_last_stage(false), last);
    EXPECT_TRUE(is_pipeline_first_stage(false, /*vp_stage=*/0) == first);
    EXPECT_EQ(is_rank_in_embedding_group(false), pp > 1 ? last : false);
    EXPECT_EQ(is_pipeline_first_stage(/*ignore_virtual=*/true), first);
  } else {
    EXPECT_FALSE(get_virtual_pipeline_model_parallel_world_size().has_value());
  }

  // Communication inside the groups.
  expect_all_reduce("tensor", get_tensor_model_parallel_group(), rank);
  expect_all_reduce("data", get_data_parallel_group(), rank);
  expect_all_reduce("data-cp", get_data_parallel_group(true), rank);
  expect_all_reduce("expert", get_expert_model_parallel_group(), rank);
  expect_all_reduce("pipeline", get_pipeline_model_parallel_group(), rank);

  // Initializing twice is an error, on every rank alike (no communication happens).
  EXPECT_THROW(initialize_model_parallel(o), Error);

  destroy_model_parallel();
  EXPECT_FALSE(model_parallel_is_initialized());
  EXPECT_THROW(get_tensor_model_parallel_group(), Error);
  EXPECT_FALSE(get_virtual_pipeline_model_parallel_world_size().has_value());
}

ModelParallelOptions opts(int tp, int pp, int cp = 1, int ep = 1, std::optional<int> etp = {},
                          std::optional<int> vpp = {}, std::string order = "tp-cp-ep-dp-pp") {
  ModelParallelOptions o;
  o.tensor_model_parallel_size = tp;
  o.pipeline_model_parallel_size = pp;
  o.context_parallel_size = cp;
  o.expert_model_parallel_size = ep;
  o.expert_tensor_parallel_size = etp;
  o.virtual_pipeline_model_parallel_size = vpp;
  o.order = std::move(order);
  return o;
}

std::vector<ModelParallelOptions> layouts_for(int world) {
  if (world == 4)
    return {opts(2, 2),          opts(1, 2, 2),
            opts(2, 1, 1, 2, 1), opts(1, 4, 1, 1, {}, 2),
            opts(4, 1),          opts(1, 2, 1, 1, {}, {}, "tp-pp-dp"),
            opts(1, 1, 1, 4)};
  if (world == 8)
    return {opts(2, 2, 2),       opts(2, 1, 1, 4, 1),     opts(1, 2, 2, 2),
            opts(2, 2, 1, 2, 2), opts(1, 4, 1, 1, {}, 3), opts(2, 4, 1, 1, {}, {}, "tp-pp-dp"),
            opts(1, 1, 1, 1)};
  return {opts(1, 1), opts(1, world)};
}

TEST(ParallelStateMpi, LayoutsAccessorsAndCollectives) {
  for (const auto& o : layouts_for(comm::get_world_size())) {
    check_layout(o);
    if (HasFatalFailure()) {
      destroy_model_parallel();
      return;
    }
  }
}

TEST(ParallelStateMpi, PartialDistributedOptimizerGroups) {
  const int world = comm::get_world_size();
  if (world % 4 != 0) GTEST_SKIP() << "needs a multiple of 4 ranks";
  const int rank = comm::get_rank();
  ModelParallelOptions o = opts(1, 1, 1, 2, 1);
  o.num_distributed_optimizer_instances = 2;
  initialize_model_parallel(o);
  // dp-cp group = all ranks; each instance is one half of it.
  const int half = world / 2;
  auto intra = get_data_parallel_group(true, true);
  EXPECT_EQ(intra->size(), half);
  EXPECT_EQ(intra->global_ranks().front(), rank / half * half);
  // Expert dp groups have world/2 members, split into 2 instances; inter pairs them across.
  auto inter = get_inter_distributed_optimizer_instance_group();
  EXPECT_EQ(inter->size(), 2);
  expect_all_reduce("inter", inter, rank);
  EXPECT_EQ(get_intra_distributed_optimizer_instance_group()->size(), half);
  destroy_model_parallel();
}

TEST(ParallelStateMpi, ImpossibleLayoutFailsOnEveryRank) {
  const int world = comm::get_world_size();
  try {
    initialize_model_parallel(opts(world + 1, 1));
    FAIL() << "accepted tp larger than the world";
  } catch (const Error& e) {
    EXPECT_NE(e.message().find("world_size (" + std::to_string(world) + ") is not divisible by " +
                               std::to_string(world + 1)),
              std::string::npos)
        << e.message();
  }
  EXPECT_FALSE(model_parallel_is_initialized());
  // The world is still usable: a barrier completes.
  comm::world()->barrier();
}

}  // namespace
}  // namespace mcore::parallel_state
