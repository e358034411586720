// Megatron Core's parallel_state (mpu): initialize_model_parallel builds every process group of
// the 5-D layout - tensor, pipeline, data, context, expert, and their combinations - with
// exactly Megatron's rank assignment (see model_parallel_layout.h), then the accessors answer
// "which group / rank / size am I in" for the rest of the library, under Megatron's names:
//
//   parallel_state::initialize_model_parallel(/*tp=*/2, /*pp=*/2);
//   auto tp_group = parallel_state::get_tensor_model_parallel_group();
//   if (parallel_state::is_pipeline_last_stage()) ...
//   parallel_state::destroy_model_parallel();
//
// Each group kind is made by one collective ProcessGroup::split of the world group (color: the
// index of the list holding this rank, key: its position there), so every rank of the world
// must call initialize_model_parallel. Groups are named ("tensor", "data", ...) so that timeout
// messages say which group stalled. The state is process-global, like Megatron's.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "mcore/comm/process_group.h"
#include "mcore/parallel_state/model_parallel_layout.h"

namespace mcore::parallel_state {

using comm::ProcessGroupPtr;

// `world`: the group to carve up; nullptr means comm::world() (init_distributed() first).
// Ranks in the groups are ranks of `world`. Errors if already initialized (destroy first) or if
// the layout is impossible for world->size() ranks.
void initialize_model_parallel(const ModelParallelOptions& options,
                               ProcessGroupPtr world = nullptr);
// Megatron's positional form.
void initialize_model_parallel(int tensor_model_parallel_size, int pipeline_model_parallel_size,
                               std::optional<int> virtual_pipeline_model_parallel_size = {},
                               int context_parallel_size = 1, int expert_model_parallel_size = 1,
                               std::optional<int> expert_tensor_parallel_size = {},
                               const std::string& order = "tp-cp-ep-dp-pp");
// Drops every group and override so that initialize_model_parallel can run again.
void destroy_model_parallel();
// True when the tensor, pipeline and data groups exist.
bool model_parallel_is_initialized();
bool is_initialized();  // Megatron: the data-parallel group exists
// The layout the groups were built from (sizes, order, every rank list). Errors if not
// initialized.
const ModelParallelLayout& get_model_parallel_layout();

// ---- groups (error "<name> group is not initialized" when absent) ----
ProcessGroupPtr get_model_parallel_group();
ProcessGroupPtr get_tensor_model_parallel_group();
ProcessGroupPtr get_pipeline_model_parallel_group();
// partial_data_parallel (needs with_context_parallel): this rank's distributed-optimizer
// instance within the dp-cp group (the full group when there is one instance).
ProcessGroupPtr get_data_parallel_group(bool with_context_parallel = false,
                                        bool partial_data_parallel = false);
ProcessGroupPtr get_context_parallel_group();
ProcessGroupPtr get_embedding_group();           // only on first and last pipeline stages
ProcessGroupPtr get_position_embedding_group();  // only on first pipeline stages
ProcessGroupPtr get_tensor_and_data_parallel_group(bool with_context_parallel = false);
ProcessGroupPtr get_tensor_and_context_parallel_group();
// FP8 amax reduction: tensor-and-data (with or without cp), or tensor(-and-context) only.
ProcessGroupPtr get_amax_reduction_group(bool with_context_parallel = false,
                                         bool tp_only_amax_red = false);
ProcessGroupPtr get_expert_model_parallel_group();
ProcessGroupPtr get_expert_tensor_parallel_group();
ProcessGroupPtr get_expert_tensor_and_model_parallel_group();       // expert tp x ep
ProcessGroupPtr get_expert_tensor_model_pipeline_parallel_group();  // expert tp x ep x pp
ProcessGroupPtr get_expert_data_parallel_group(bool partial_expert_data_parallel = false);
ProcessGroupPtr get_intra_distributed_optimizer_instance_group();
ProcessGroupPtr get_inter_distributed_optimizer_instance_group();  // instances > 1 only

// ---- sizes and ranks (the set_* overrides win, as in Megatron) ----
int get_tensor_model_parallel_world_size();
int get_tensor_model_parallel_rank();
void set_tensor_model_parallel_world_size(std::optional<int> world_size);
void set_tensor_model_parallel_rank(std::optional<int> rank);
int get_pipeline_model_parallel_world_size();
int get_pipeline_model_parallel_rank();
void set_pipeline_model_parallel_world_size(std::optional<int> world_size);
void set_pipeline_model_parallel_rank(std::optional<int> rank);
int get_data_parallel_world_size(bool with_context_parallel = false,
                                 bool partial_data_parallel = false);
int get_data_parallel_rank(bool with_context_parallel = false, bool partial_data_parallel = false);
void set_data_parallel_rank(std::optional<int> rank);
int get_context_parallel_world_size();
int get_context_parallel_rank();
int get_tensor_and_context_parallel_world_size();
int get_tensor_and_context_parallel_rank();
int get_expert_model_parallel_world_size();
int get_expert_model_parallel_rank();
void set_expert_model_parallel_world_size(std::optional<int> world_size);
void set_expert_model_parallel_rank(std::optional<int> rank);
int get_expert_tensor_parallel_world_size();
int get_expert_tensor_parallel_rank();
void set_expert_tensor_parallel_world_size(std::optional<int> world_size);
void set_expert_tensor_parallel_rank(std::optional<int> rank);
int get_expert_tensor_and_model_parallel_world_size();
int get_expert_tensor_and_model_parallel_rank();
int get_expert_data_parallel_world_size(bool partial_expert_data_parallel = false);
int get_expert_data_parallel_rank(bool partial_expert_data_parallel = false);

// ---- global ranks (ranks of the world group) ----
int get_tensor_model_parallel_src_rank();  // first rank of my tensor group
int get_model_parallel_src_rank();
int get_data_parallel_src_rank(bool with_context_parallel = false);
int get_expert_model_parallel_src_rank();
const std::vector<int>& get_context_parallel_global_ranks();
int get_pipeline_model_parallel_first_rank();
int get_pipeline_model_parallel_last_rank();
int get_pipeline_model_parallel_next_rank();  // wraps around, as Megatron's
int get_pipeline_model_parallel_prev_rank();

// ---- pipeline stages ----
// With ignore_virtual=false and interleaving on, the virtual stage must also be the first
// (last): vp_stage when given, else the current virtual pipeline rank.
bool is_pipeline_first_stage(bool ignore_virtual = true, std::optional<int> vp_stage = {});
bool is_pipeline_last_stage(bool ignore_virtual = true, std::optional<int> vp_stage = {});
bool is_rank_in_embedding_group(bool ignore_virtual = true, std::optional<int> vp_stage = {});
bool is_rank_in_position_embedding_group();

// Virtual pipeline (interleaved schedule) state: nullopt when interleaving is off.
std::optional<int> get_virtual_pipeline_model_parallel_rank();
void set_virtual_pipeline_model_parallel_rank(std::optional<int> rank);
std::optional<int> get_virtual_pipeline_model_parallel_world_size();
void set_virtual_pipeline_model_parallel_world_size(std::optional<int> world_size);

}  // namespace mcore::parallel_state
