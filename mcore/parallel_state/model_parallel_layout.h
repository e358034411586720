// The full set of process groups initialize_model_parallel creates, as rank lists, computed
// without communication: every rank derives the same layout, then parallel_state.cpp turns each
// group kind into one ProcessGroup::split. Keeping this pure lets tests compare every group with
// megatron-core's own initialize_model_parallel (tests/reference/data/rank_groups.json) and check
// the errors for impossible layouts without starting MPI.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "mcore/parallel_state/rank_generator.h"

namespace mcore::parallel_state {

// Megatron's initialize_model_parallel keyword arguments (the ones that change rank layout).
struct ModelParallelOptions {
  int tensor_model_parallel_size = 1;
  int pipeline_model_parallel_size = 1;
  std::optional<int> virtual_pipeline_model_parallel_size;
  int context_parallel_size = 1;
  int expert_model_parallel_size = 1;
  std::optional<int> expert_tensor_parallel_size;  // default: tensor_model_parallel_size
  // Partial distributed optimizer: the DP(-CP) domain is split into this many replicas.
  int num_distributed_optimizer_instances = 1;
  std::string order = "tp-cp-ep-dp-pp";
};

enum class GroupKind {
  kDataWithContext,  // dp-cp
  kIntraPartialDataWithContext,
  kData,                       // dp
  kContext,                    // cp
  kModel,                      // tp-pp
  kTensor,                     // tp
  kPipeline,                   // pp
  kEmbedding,                  // first and last stage of each pipeline
  kPositionEmbedding,          // first stage of each pipeline
  kTensorAndDataWithContext,   // tp-dp-cp
  kTensorAndData,              // tp-dp
  kTensorAndContext,           // tp-cp
  kExpert,                     // ep (expert generator)
  kExpertTensor,               // expert tp
  kExpertTensorAndModel,       // expert tp-ep
  kExpertTensorModelPipeline,  // expert tp-ep-pp
  kExpertData,                 // expert dp
  kIntraPartialExpertData,
  kInterPartialExpertData,
  kIntraDistributedOptimizerInstance,
  kCount
};

struct GroupLayout {
  GroupKind kind;
  const char* name;           // for messages and ProcessGroup::set_name: "tensor", "data", ...
  const char* megatron_desc;  // megatron-core's group_desc, e.g. "TENSOR_MODEL_PARALLEL_GROUP"
  RankGroups groups;          // every group of this kind, in Megatron's creation order
};

struct ModelParallelLayout {
  int world_size = 1;
  int tensor_model_parallel_size = 1;
  int pipeline_model_parallel_size = 1;
  int context_parallel_size = 1;
  int data_parallel_size = 1;
  int expert_model_parallel_size = 1;
  int expert_tensor_parallel_size = 1;
  int expert_data_parallel_size = 1;
  std::optional<int> virtual_pipeline_model_parallel_size;
  int num_distributed_optimizer_instances = 1;
  std::string order;
  // Group kinds in creation order. Partial-optimizer kinds appear only when
  // num_distributed_optimizer_instances > 1 (else they alias the full data groups, as in Megatron).
  std::vector<GroupLayout> groups;

  // nullptr when this layout has no groups of that kind.
  const GroupLayout* find(GroupKind kind) const;
};

// Validates like Megatron (same conditions, messages that carry Megatron's text and the numbers)
// and computes every group. Throws mcore::Error for impossible layouts.
ModelParallelLayout make_model_parallel_layout(int world_size, const ModelParallelOptions& options);

const char* group_kind_name(GroupKind kind);

}  // namespace mcore::parallel_state
