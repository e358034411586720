#include "mcore/parallel_state/model_parallel_layout.h"

#include "mcore/base/error.h"

namespace mcore::parallel_state {

namespace {

struct KindInfo {
  const char* name;
  const char* desc;
};

// Indexed by GroupKind.
constexpr KindInfo kKinds[] = {
    {"data-with-context", "DATA_PARALLEL_GROUP_WITH_CP"},
    {"intra-partial-data-with-context", "INTRA_PARTIAL_DATA_PARALLEL_GROUP_WITH_CP"},
    {"data", "DATA_PARALLEL_GROUP"},
    {"context", "CONTEXT_PARALLEL_GROUP"},
    {"model", "MODEL_PARALLEL_GROUP"},
    {"tensor", "TENSOR_MODEL_PARALLEL_GROUP"},
    {"pipeline", "PIPELINE_MODEL_PARALLEL_GROUP"},
    {"embedding", "EMBEDDING_GROUP"},
    {"position-embedding", "POSITION_EMBEDDING_GROUP"},
    {"tensor-and-data-with-context", "TENSOR_AND_DATA_PARALLEL_GROUP_WITH_CP"},
    {"tensor-and-data", "TENSOR_AND_DATA_PARALLEL_GROUP"},
    {"tensor-and-context", "TENSOR_AND_CONTEXT_PARALLEL_GROUP"},
    {"expert", "EXPERT_MODEL_PARALLEL_GROUP"},
    {"expert-tensor", "EXPERT_TENSOR_PARALLEL_GROUP"},
    {"expert-tensor-and-model", "EXPERT_TENSOR_AND_MODEL_PARALLEL_GROUP"},
    {"expert-tensor-model-pipeline", "EXPERT_TENSOR_MODEL_PIPELINE_PARALLEL_GROUP"},
    {"expert-data", "EXPERT_DATA_PARALLEL_GROUP"},
    // Megatron builds these two with create_hierarchical_groups(group_desc=EXPERT_DATA...).
    {"intra-partial-expert-data", "HIERARCHICAL_EXPERT_DATA_PARALLEL_GROUP_L0"},
    {"inter-partial-expert-data", "HIERARCHICAL_EXPERT_DATA_PARALLEL_GROUP_L1"},
    {"intra-distributed-optimizer-instance", "INTRA_DISTRIBUTED_OPTIMIZER_INSTANCE_GROUP"},
};
static_assert(sizeof(kKinds) / sizeof(kKinds[0]) == static_cast<size_t>(GroupKind::kCount));

GroupLayout make_group(GroupKind kind, RankGroups groups) {
  const KindInfo& info = kKinds[static_cast<int>(kind)];
  return GroupLayout{kind, info.name, info.desc, std::move(groups)};
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

}  // namespace

const char* group_kind_name(GroupKind kind) {
  return kKinds[static_cast<int>(kind)].name;
}

const GroupLayout* ModelParallelLayout::find(GroupKind kind) const {
  for (const auto& g : groups)
    if (g.kind == kind) return &g;
  return nullptr;
}

ModelParallelLayout make_model_parallel_layout(int world_size, const ModelParallelOptions& o) {
  const int tp = o.tensor_model_parallel_size, pp = o.pipeline_model_parallel_size;
  const int cp = o.context_parallel_size, ep = o.expert_model_parallel_size;
  const int etp = o.expert_tensor_parallel_size.value_or(tp);
  const int instances = o.num_distributed_optimizer_instances;
  MCORE_CHECK(world_size >= 1) << "initialize_model_parallel: world size " << world_size;
  MCORE_CHECK(tp >= 1 && pp >= 1 && cp >= 1 && ep >= 1 && etp >= 1 && instances >= 1)
      << "initialize_model_parallel: parallel sizes must be >= 1, got tensor_model_parallel_size="
      << tp << " pipeline_model_parallel_size=" << pp << " context_parallel_size=" << cp
      << " expert_model_parallel_size=" << ep << " expert_tensor_parallel_size=" << etp
      << " num_distributed_optimizer_instances=" << instances;

  const int model_size = tp * pp * cp;
  MCORE_CHECK(world_size % model_size == 0)
      << "world_size (" << world_size << ") is not divisible by " << model_size
      << " = tensor_model_parallel_size (" << tp << ") x pipeline_model_parallel_size (" << pp
      << ") x context_parallel_size (" << cp << "); choose sizes whose product divides the "
      << "number of ranks";
  const int dp = world_size / model_size;

  if (o.virtual_pipeline_model_parallel_size) {
    MCORE_CHECK(pp > 1) << "pipeline-model-parallel size should be greater than 1 with "
                           "interleaved schedule (virtual_pipeline_model_parallel_size="
                        << *o.virtual_pipeline_model_parallel_size
                        << ", pipeline_model_parallel_size=" << pp << ")";
    MCORE_CHECK(*o.virtual_pipeline_model_parallel_size >= 1)
        << "virtual_pipeline_model_parallel_size must be >= 1, got "
        << *o.virtual_pipeline_model_parallel_size;
  }

  RankGenerator decoder(tp, /*ep=*/1, dp, pp, cp, o.order);

  const int expert_model_size = etp * ep * pp;
  MCORE_CHECK(world_size % expert_model_size == 0)
      << "world_size (" << world_size
      << ") is not divisible by expert_tensor_model_pipeline_parallel size (" << expert_model_size
      << ") = expert_tensor_parallel_size (" << etp << ") x expert_model_parallel_size (" << ep
      << ") x pipeline_model_parallel_size (" << pp << ")";
  const int edp = world_size / expert_model_size;
  RankGenerator expert(etp, ep, edp, pp, /*cp=*/1, o.order);

  MCORE_CHECK(ends_with(o.order, "pp") || pp == 1 || edp == dp)
      << "When not using pp-last rank ordering, the data parallel size of the attention and moe "
         "layers must be the same (order "
      << o.order << ": data parallel size " << dp << ", expert data parallel size " << edp << ")";
  const RankGroups pp_groups = decoder.get_ranks("pp");
  const RankGroups expert_pp_groups = expert.get_ranks("pp");
  MCORE_CHECK(pp_groups == expert_pp_groups)
      << "Pipeline parallel groups are expected to be the same for Non-Expert and Expert part, "
         "but got "
      << rank_groups_str(pp_groups) << " and " << rank_groups_str(expert_pp_groups) << " (order "
      << o.order << ")";

  MCORE_CHECK((dp * cp) % instances == 0)
      << "Data parallel size should be divisible by partial DistOpt shard factor (data parallel "
         "size "
      << dp << " x context parallel size " << cp << " = " << dp * cp
      << ", num_distributed_optimizer_instances " << instances << ")";
  MCORE_CHECK(edp % instances == 0)
      << "Expert data parallel size should be divisible by partial DistOpt shard factor (expert "
         "data parallel size "
      << edp << ", num_distributed_optimizer_instances " << instances << ")";

  ModelParallelLayout L;
  L.world_size = world_size;
  L.tensor_model_parallel_size = tp;
  L.pipeline_model_parallel_size = pp;
  L.context_parallel_size = cp;
  L.data_parallel_size = dp;
  L.expert_model_parallel_size = ep;
  L.expert_tensor_parallel_size = etp;
  L.expert_data_parallel_size = edp;
  L.virtual_pipeline_model_parallel_size = o.virtual_pipeline_model_parallel_size;
  L.num_distributed_optimizer_instances = instances;
  L.order = o.order;
  auto add = [&](GroupKind kind, RankGroups groups) {
    L.groups.push_back(make_group(kind, std::move(groups)));
  };

  // Dense groups, in Megatron's creation order.
  const RankGroups dp_cp = decoder.get_ranks("dp-cp");
  add(GroupKind::kDataWithContext, dp_cp);
  if (instances > 1) {
    // Each dp-cp group cut into `instances` consecutive pieces.
    const int intra = dp * cp / instances;
    RankGroups pieces;
    for (const auto& g : dp_cp)
      for (int i = 0; i < instances; ++i)
        pieces.emplace_back(g.begin() + i * intra, g.begin() + (i + 1) * intra);
    add(GroupKind::kIntraPartialDataWithContext, std::move(pieces));
  }
  add(GroupKind::kData, decoder.get_ranks("dp"));
  add(GroupKind::kContext, decoder.get_ranks("cp"));
  add(GroupKind::kModel, decoder.get_ranks("tp-pp"));
  add(GroupKind::kTensor, decoder.get_ranks("tp"));
  add(GroupKind::kPipeline, pp_groups);
  // Embeddings live on the first and last stage (tied input/output embedding), position
  // embeddings on the first stage only (Megatron's default_*embedding_ranks).
  RankGroups embedding, position_embedding;
  for (const auto& g : pp_groups) {
    embedding.push_back(g.size() == 1 ? std::vector<int>{g.front()}
                                      : std::vector<int>{g.front(), g.back()});
    position_embedding.push_back({g.front()});
  }
  add(GroupKind::kEmbedding, std::move(embedding));
  add(GroupKind::kPositionEmbedding, std::move(position_embedding));
  add(GroupKind::kTensorAndDataWithContext, decoder.get_ranks("tp-dp-cp"));
  add(GroupKind::kTensorAndData, decoder.get_ranks("tp-dp"));
  add(GroupKind::kTensorAndContext, decoder.get_ranks("tp-cp"));

  // Expert groups come from the expert generator (tp = expert_tp, cp folded into dp).
  add(GroupKind::kExpert, expert.get_ranks("ep"));
  add(GroupKind::kExpertTensor, expert.get_ranks("tp"));
  add(GroupKind::kExpertTensorAndModel, expert.get_ranks("tp-ep"));
  const RankGroups expert_mp = expert.get_ranks("tp-ep-pp");
  add(GroupKind::kExpertTensorModelPipeline, expert_mp);
  const RankGroups expert_dp = expert.get_ranks("dp");
  add(GroupKind::kExpertData, expert_dp);
  const int intra_edp = edp / instances;
  if (instances > 1) {
    // Megatron's create_hierarchical_groups with sizes [intra_edp, instances]: level 0 takes
    // consecutive pieces, level 1 takes members intra_edp apart.
    RankGroups intra, inter;
    for (const auto& g : expert_dp) {
      for (int i = 0; i < instances; ++i)
        intra.emplace_back(g.begin() + i * intra_edp, g.begin() + (i + 1) * intra_edp);
      for (int j = 0; j < intra_edp; ++j) {
        std::vector<int> members;
        for (int i = 0; i < instances; ++i) members.push_back(g[i * intra_edp + j]);
        inter.push_back(std::move(members));
      }
    }
    add(GroupKind::kIntraPartialExpertData, std::move(intra));
    add(GroupKind::kInterPartialExpertData, std::move(inter));
  }
  // One distributed-optimizer instance: intra_edp consecutive expert model-parallel groups.
  RankGroups instance_groups;
  std::vector<int> members;
  for (size_t i = 0; i < expert_mp.size(); ++i) {
    members.insert(members.end(), expert_mp[i].begin(), expert_mp[i].end());
    if ((i + 1) % intra_edp == 0) instance_groups.push_back(std::move(members)), members.clear();
  }
  add(GroupKind::kIntraDistributedOptimizerInstance, std::move(instance_groups));
  return L;
}

}  // namespace mcore::parallel_state
