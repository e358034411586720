#include "mcore/parallel_state/parallel_state.h"

#include <algorithm>
#include <array>

#include "mcore/base/error.h"
#include "mcore/comm/distributed.h"

namespace mcore::parallel_state {

namespace {

constexpr int kKinds = static_cast<int>(GroupKind::kCount);

struct State {
  bool initialized = false;
  ModelParallelLayout layout;
  ProcessGroupPtr world;
  int rank = 0;  // in `world`
  std::array<ProcessGroupPtr, kKinds> groups;
  std::array<std::vector<int>, kKinds> members;  // ranks of my group of each kind
  // Megatron's _MPU_* overrides and virtual pipeline state; they live outside initialization
  // (settable before it), and destroy_model_parallel clears them.
  std::optional<int> tp_world, tp_rank, pp_world, pp_rank, dp_rank;
  std::optional<int> ep_world, ep_rank, etp_world, etp_rank;
  std::optional<int> vpp_rank, vpp_world;
};

State& state() {
  static State s;
  return s;
}

const State& initialized_state() {
  const State& s = state();
  MCORE_CHECK(s.initialized) << "model parallel groups are not initialized: call "
                                "parallel_state::initialize_model_parallel() first";
  return s;
}

ProcessGroupPtr group(GroupKind kind, const char* what) {
  const ProcessGroupPtr& g = state().groups[static_cast<int>(kind)];
  MCORE_CHECK(g != nullptr) << what << " is not initialized"
                            << (state().initialized ? " on this rank"
                                                    : ": call "
                                                      "parallel_state::initialize_model_parallel()"
                                                      " first");
  return g;
}

const std::vector<int>& members(GroupKind kind, const char* what) {
  group(kind, what);
  return state().members[static_cast<int>(kind)];
}

bool contains(const std::vector<int>& v, int x) {
  return std::find(v.begin(), v.end(), x) != v.end();
}

}  // namespace

void initialize_model_parallel(const ModelParallelOptions& options, ProcessGroupPtr world) {
  State& s = state();
  MCORE_CHECK(!s.initialized) << "model parallel groups are already initialized: call "
                                 "parallel_state::destroy_model_parallel() before initializing "
                                 "again";
  if (!world) world = comm::world();
  // Validates before any communication, so every rank fails alike on a bad layout.
  ModelParallelLayout layout = make_model_parallel_layout(world->size(), options);
  const int rank = world->rank();

  std::array<ProcessGroupPtr, kKinds> groups;
  std::array<std::vector<int>, kKinds> mine;
  for (const GroupLayout& kind : layout.groups) {
    int color = -1, key = 0;
    for (size_t i = 0; i < kind.groups.size(); ++i) {
      auto it = std::find(kind.groups[i].begin(), kind.groups[i].end(), rank);
      if (it == kind.groups[i].end()) continue;
      MCORE_CHECK(color < 0) << "rank " << rank << " is in two " << kind.name << " groups";
      color = static_cast<int>(i);
      key = static_cast<int>(it - kind.groups[i].begin());
    }
    ProcessGroupPtr g = world->split(color, key);
    if (color < 0) continue;
    const auto& expected = kind.groups[color];
    MCORE_CHECK(g && g->size() == static_cast<int>(expected.size()) && g->rank() == key)
        << "split of the " << kind.name << " group gave rank " << (g ? g->rank() : -1) << " of "
        << (g ? g->size() : 0) << ", expected rank " << key << " of " << expected.size();
    g->set_name(kind.name);
    groups[static_cast<int>(kind.kind)] = g;
    mine[static_cast<int>(kind.kind)] = expected;
  }
  // With one distributed-optimizer instance the partial groups are the full ones (Megatron
  // aliases them the same way); the inter-instance group then does not exist.
  auto alias = [&](GroupKind partial, GroupKind full) {
    if (!layout.find(partial)) {
      groups[static_cast<int>(partial)] = groups[static_cast<int>(full)];
      mine[static_cast<int>(partial)] = mine[static_cast<int>(full)];
    }
  };
  alias(GroupKind::kIntraPartialDataWithContext, GroupKind::kDataWithContext);
  alias(GroupKind::kIntraPartialExpertData, GroupKind::kExpertData);

  s.layout = std::move(layout);
  s.world = std::move(world);
  s.rank = rank;
  s.groups = std::move(groups);
  s.members = std::move(mine);
  if (s.layout.virtual_pipeline_model_parallel_size) {
    s.vpp_rank = 0;
    s.vpp_world = s.layout.virtual_pipeline_model_parallel_size;
  }
  s.initialized = true;
}

void initialize_model_parallel(int tensor_model_parallel_size, int pipeline_model_parallel_size,
                               std::optional<int> virtual_pipeline_model_parallel_size,
                               int context_parallel_size, int expert_model_parallel_size,
                               std::optional<int> expert_tensor_parallel_size,
                               const std::string& order) {
  ModelParallelOptions o;
  o.tensor_model_parallel_size = tensor_model_parallel_size;
  o.pipeline_model_parallel_size = pipeline_model_parallel_size;
  o.virtual_pipeline_model_parallel_size = virtual_pipeline_model_parallel_size;
  o.context_parallel_size = context_parallel_size;
  o.expert_model_parallel_size = expert_model_parallel_size;
  o.expert_tensor_parallel_size = expert_tensor_parallel_size;
  o.order = order;
  initialize_model_parallel(o);
}

void destroy_model_parallel() {
  state() = State{};
}

bool model_parallel_is_initialized() {
  const State& s = state();
  return s.groups[static_cast<int>(GroupKind::kTensor)] &&
         s.groups[static_cast<int>(GroupKind::kPipeline)] &&
         s.groups[static_cast<int>(GroupKind::kData)];
}

bool is_initialized() {
  return state().groups[static_cast<int>(GroupKind::kData)] != nullptr;
}

const ModelParallelLayout& get_model_parallel_layout() {
  return initialized_state().layout;
}

// ---- groups ----

ProcessGroupPtr get_model_parallel_group() {
  return group(GroupKind::kModel, "model parallel group");
}
ProcessGroupPtr get_tensor_model_parallel_group() {
  return group(GroupKind::kTensor, "tensor model parallel group");
}
ProcessGroupPtr get_pipeline_model_parallel_group() {
  return group(GroupKind::kPipeline, "pipeline_model parallel group");
}
ProcessGroupPtr get_data_parallel_group(bool with_context_parallel, bool partial_data_parallel) {
  MCORE_CHECK(with_context_parallel || !partial_data_parallel)
      << "Partial DP for Optimizer needs to include CP: call "
         "get_data_parallel_group(/*with_context_parallel=*/true, /*partial=*/true)";
  if (partial_data_parallel)
    return group(GroupKind::kIntraPartialDataWithContext,
                 "intra partial data parallel group with CP");
  if (with_context_parallel)
    return group(GroupKind::kDataWithContext, "data parallel group with context parallel");
  return group(GroupKind::kData, "data parallel group");
}
ProcessGroupPtr get_context_parallel_group() {
  return group(GroupKind::kContext, "context parallel group");
}
ProcessGroupPtr get_embedding_group() {
  return group(GroupKind::kEmbedding, "embedding group");
}
ProcessGroupPtr get_position_embedding_group() {
  return group(GroupKind::kPositionEmbedding, "position embedding group");
}
ProcessGroupPtr get_tensor_and_data_parallel_group(bool with_context_parallel) {
  return with_context_parallel ? group(GroupKind::kTensorAndDataWithContext,
                                       "tensor and data parallel group with context parallel")
                               : group(GroupKind::kTensorAndData, "tensor and data parallel group");
}
ProcessGroupPtr get_tensor_and_context_parallel_group() {
  return group(GroupKind::kTensorAndContext, "tensor and context parallel group");
}
ProcessGroupPtr get_amax_reduction_group(bool with_context_parallel, bool tp_only_amax_red) {
  if (tp_only_amax_red)
    return with_context_parallel ? get_tensor_and_context_parallel_group()
                                 : get_tensor_model_parallel_group();
  return get_tensor_and_data_parallel_group(with_context_parallel);
}
ProcessGroupPtr get_expert_model_parallel_group() {
  return group(GroupKind::kExpert, "expert model parallel group");
}
ProcessGroupPtr get_expert_tensor_parallel_group() {
  return group(GroupKind::kExpertTensor, "Expert tensor parallel group");
}
ProcessGroupPtr get_expert_tensor_and_model_parallel_group() {
  return group(GroupKind::kExpertTensorAndModel, "Expert tensor and model parallel group");
}
ProcessGroupPtr get_expert_tensor_model_pipeline_parallel_group() {
  return group(GroupKind::kExpertTensorModelPipeline,
               "Expert tensor-model-pipeline parallel group");
}
ProcessGroupPtr get_expert_data_parallel_group(bool partial_expert_data_parallel) {
  return partial_expert_data_parallel
             ? group(GroupKind::kIntraPartialExpertData, "Intra partial expert data parallel group")
             : group(GroupKind::kExpertData, "Expert data parallel group");
}
ProcessGroupPtr get_intra_distributed_optimizer_instance_group() {
  return group(GroupKind::kIntraDistributedOptimizerInstance,
               "Intra distributed optimizer instance group");
}
ProcessGroupPtr get_inter_distributed_optimizer_instance_group() {
  return group(GroupKind::kInterPartialExpertData,
               "inter distributed optimizer instance group (it exists only with "
               "num_distributed_optimizer_instances > 1)");
}

// ---- sizes and ranks ----

int get_tensor_model_parallel_world_size() {
  return state().tp_world ? *state().tp_world : get_tensor_model_parallel_group()->size();
}
int get_tensor_model_parallel_rank() {
  return state().tp_rank ? *state().tp_rank : get_tensor_model_parallel_group()->rank();
}
void set_tensor_model_parallel_world_size(std::optional<int> n) {
  state().tp_world = n;
}
void set_tensor_model_parallel_rank(std::optional<int> r) {
  state().tp_rank = r;
}
int get_pipeline_model_parallel_world_size() {
  return state().pp_world ? *state().pp_world : get_pipeline_model_parallel_group()->size();
}
int get_pipeline_model_parallel_rank() {
  return state().pp_rank ? *state().pp_rank : get_pipeline_model_parallel_group()->rank();
}
void set_pipeline_model_parallel_world_size(std::optional<int> n) {
  state().pp_world = n;
}
void set_pipeline_model_parallel_rank(std::optional<int> r) {
  state().pp_rank = r;
}
int get_data_parallel_world_size(bool with_context_parallel, bool partial_data_parallel) {
  return get_data_parallel_group(with_context_parallel, partial_data_parallel)->size();
}
int get_data_parallel_rank(bool with_context_parallel, bool partial_data_parallel) {
  if (state().dp_rank) return *state().dp_rank;
  return get_data_parallel_group(with_context_parallel, partial_data_parallel)->rank();
}
void set_data_parallel_rank(std::optional<int> r) {
  state().dp_rank = r;
}
int get_context_parallel_world_size() {
  return get_context_parallel_group()->size();
}
int get_context_parallel_rank() {
  return get_context_parallel_group()->rank();
}
int get_tensor_and_context_parallel_world_size() {
  return get_tensor_and_context_parallel_group()->size();
}
int get_tensor_and_context_parallel_rank() {
  return get_tensor_and_context_parallel_group()->rank();
}
int get_expert_model_parallel_world_size() {
  return state().ep_world ? *state().ep_world : get_expert_model_parallel_group()->size();
}
int get_expert_model_parallel_rank() {
  return state().ep_rank ? *state().ep_rank : get_expert_model_parallel_group()->rank();
}
void set_expert_model_parallel_world_size(std::optional<int> n) {
  state().ep_world = n;
}
void set_expert_model_parallel_rank(std::optional<int> r) {
  state().ep_rank = r;
}
int get_expert_tensor_parallel_world_size() {
  return state().etp_world ? *state().etp_world : get_expert_tensor_parallel_group()->size();
}
int get_expert_tensor_parallel_rank() {
  return state().etp_rank ? *state().etp_rank : get_expert_tensor_parallel_group()->rank();
}
void set_expert_tensor_parallel_world_size(std::optional<int> n) {
  state().etp_world = n;
}
void set_expert_tensor_parallel_rank(std::optional<int> r) {
  state().etp_rank = r;
}
int get_expert_tensor_and_model_parallel_world_size() {
  return get_expert_tensor_and_model_parallel_group()->size();
}
int get_expert_tensor_and_model_parallel_rank() {
  return get_expert_tensor_and_model_parallel_group()->rank();
}
int get_expert_data_parallel_world_size(bool partial) {
  return get_expert_data_parallel_group(partial)->size();
}
int get_expert_data_parallel_rank(bool partial) {
  return get_expert_data_parallel_group(partial)->rank();
}

// ---- global ranks ----

int get_tensor_model_parallel_src_rank() {
  return members(GroupKind::kTensor, "Tensor model parallel group").front();
}
int get_model_parallel_src_rank() {
  return members(GroupKind::kModel, "Model parallel group").front();
}
int get_data_parallel_src_rank(bool with_context_parallel) {
  return with_context_parallel ? members(GroupKind::kDataWithContext,
                                         "Data parallel group with context parallel combined")
                                     .front()
                               : members(GroupKind::kData, "Data parallel group").front();
}
int get_expert_model_parallel_src_rank() {
  return members(GroupKind::kExpert, "Expert model parallel group").front();
}
const std::vector<int>& get_context_parallel_global_ranks() {
  return members(GroupKind::kContext, "context parallel group");
}

namespace {
const std::vector<int>& pipeline_ranks() {
  return members(GroupKind::kPipeline, "Pipeline parallel group");
}
}  // namespace

int get_pipeline_model_parallel_first_rank() {
  return pipeline_ranks().front();
}
int get_pipeline_model_parallel_last_rank() {
  return pipeline_ranks()[get_pipeline_model_parallel_world_size() - 1];
}
int get_pipeline_model_parallel_next_rank() {
  const int n = get_pipeline_model_parallel_world_size();
  return pipeline_ranks()[(get_pipeline_model_parallel_rank() + 1) % n];
}
int get_pipeline_model_parallel_prev_rank() {
  const int n = get_pipeline_model_parallel_world_size();
  return pipeline_ranks()[(get_pipeline_model_parallel_rank() - 1 + n) % n];
}

// ---- pipeline stages ----

namespace {
// The virtual stage a stage query is about: the explicit one, else the global virtual rank.
int virtual_stage(std::optional<int> vp_stage) {
  if (vp_stage) return *vp_stage;
  const auto& r = state().vpp_rank;
  MCORE_CHECK(r.has_value()) << "interleaved pipeline is on but neither vp_stage nor the virtual "
                                "pipeline rank (set_virtual_pipeline_model_parallel_rank) is set";
  return *r;
}
}  // namespace

bool is_pipeline_first_stage(bool ignore_virtual, std::optional<int> vp_stage) {
  if (!ignore_virtual && state().vpp_world && virtual_stage(vp_stage) != 0) return false;
  return get_pipeline_model_parallel_rank() == 0;
}

bool is_pipeline_last_stage(bool ignore_virtual, std::optional<int> vp_stage) {
  if (!ignore_virtual && state().vpp_world && virtual_stage(vp_stage) != *state().vpp_world - 1)
    return false;
  return get_pipeline_model_parallel_rank() == get_pipeline_model_parallel_world_size() - 1;
}

bool is_rank_in_embedding_group(bool ignore_virtual, std::optional<int> vp_stage) {
  const State& s = state();
  const auto& ranks = s.members[static_cast<int>(GroupKind::kEmbedding)];
  if (!s.initialized || !contains(ranks, s.rank)) return false;
  if (ignore_virtual) return true;
  // The tied embedding lives on the first virtual stage of the first rank and the last virtual
  // stage of the last rank.
  if (s.rank == ranks.front()) return is_pipeline_first_stage(false, vp_stage);
  if (s.rank == ranks.back()) return is_pipeline_last_stage(false, vp_stage);
  return true;
}

bool is_rank_in_position_embedding_group() {
  const State& s = state();
  return s.initialized &&
         contains(s.members[static_cast<int>(GroupKind::kPositionEmbedding)], s.rank);
}

std::optional<int> get_virtual_pipeline_model_parallel_rank() {
  return state().vpp_rank;
}
void set_virtual_pipeline_model_parallel_rank(std::optional<int> rank) {
  state().vpp_rank = rank;
}
std::optional<int> get_virtual_pipeline_model_parallel_world_size() {
  return state().vpp_world;
}
void set_virtual_pipeline_model_parallel_world_size(std::optional<int> world_size) {
  state().vpp_world = world_size;
}

}  // namespace mcore::parallel_state
