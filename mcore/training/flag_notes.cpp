// The notes pretrain_gpt prints for Megatron flags it accepts without acting on them.
#include <algorithm>
#include <iostream>
#include <string>
#include <utility>
#include <vector>

#include "mcore/training/validate_args.h"

namespace mcore::training {

// Megatron flags that select among implementations or logging extras mcore doesn't have. They
// are accepted so existing launch scripts run, and each one given says it changes nothing.
void note_flags_without_effect(const Arguments& a) {
  auto warn = [&](const Arguments& args, const std::string& msg) {
    if (args.rank == 0) std::cerr << "WARNING: " << msg << "\n";
  };
  static const std::pair<const char*, const char*> kNotes[] = {
      {"use_flash_attn", "--use-flash-attn: attention always runs mcore's fused blocked kernel"},
      {"use_mcore_models", "--use-mcore-models: the models are always mcore's"},
      {"transformer_impl", "--transformer-impl: mcore has one transformer implementation"},
      {"masked_softmax_fusion", "--no-masked-softmax-fusion: the attention kernel is always fused"},
      {"bias_gelu_fusion", "--no-bias-gelu-fusion: mcore picks its own fusions"},
      {"bias_swiglu_fusion", "--no-bias-swiglu-fusion: mcore picks its own fusions"},
      {"bias_dropout_fusion", "--no-bias-dropout-fusion: mcore picks its own fusions"},
      {"apply_rope_fusion", "--no-rope-fusion: mcore picks its own fusions"},
      {"persist_layer_norm", "--no-persist-layer-norm: mcore has one layer norm kernel"},
      {"gradient_accumulation_fusion",
       "--no-gradient-accumulation-fusion: weight gradients are always made in the parameter "
       "dtype and then added to the fp32 grad buffer, Megatron's unfused path"},
      {"cross_entropy_loss_fusion", "--cross-entropy-loss-fusion: the loss is always fused"},
      {"attention_softmax_in_fp32",
       "--attention-softmax-in-fp32: the attention softmax always accumulates in fp32"},
      {"use_cpu_initialization",
       "--use-cpu-initialization: initial weights are the same on every device"},
      {"manual_gc", "--manual-gc: there is no garbage collector"},
      {"ckpt_format", "--ckpt-format: checkpoints are always mcore's sharded safetensors format"},
      {"distributed_backend",
       "--distributed-backend: ranks talk over MPI on CPU and NCCL with --device cuda"},
      {"num_dataset_builder_threads",
       "--num-dataset-builder-threads: datasets build on one thread"},
      {"empty_unused_memory_level",
       "--empty-unused-memory-level: mcore's allocators keep and reuse their blocks"},
      {"overlap_p2p_comm",
       "--(no-)overlap-p2p-communication: pipeline sends and receives are "
       "batched as the schedule issues them"},
      {"overlap_p2p_comm_warmup_flush",
       "--overlap-p2p-communication-warmup-flush: pipeline sends and receives are batched as the "
       "schedule issues them"},
      {"overlap_param_gather",
       "--overlap-param-gather: the distributed optimizer all-gathers the updated weights at the "
       "end of each step"},
      {"num_workers", "--num-workers: batches are read on the training thread"},
      {"async_save", "--async-save: checkpoints are saved synchronously (the same files)"},
      {"ckpt_fully_parallel_save",
       "--(no-)ckpt-fully-parallel-save: every rank always writes its own shards"},
      {"ckpt_fully_parallel_load",
       "--ckpt-fully-parallel-load: every rank always reads the shards it needs"},
      {"ckpt_assume_constant_structure",
       "--ckpt-assume-constant-structure: each save is planned afresh"},
      {"dist_ckpt_strictness",
       "--dist-ckpt-strictness: a key missing from the checkpoint is always an error"},
      {"use_dist_ckpt", "--use-dist-ckpt: checkpoints are always mcore's sharded format"},
      {"auto_detect_ckpt_format",
       "--auto-detect-ckpt-format: checkpoints are always mcore's sharded format"},
      {"wandb_project",
       "--wandb-project: there is no Weights & Biases logging; metrics go to --tensorboard-dir "
       "(event files and metrics.jsonl)"},
      {"wandb_exp_name", "--wandb-exp-name: there is no Weights & Biases logging"},
      {"wandb_save_dir", "--wandb-save-dir: there is no Weights & Biases logging"},
      {"wandb_entity", "--wandb-entity: there is no Weights & Biases logging"},
      {"attention_backend", "--attention-backend: attention always runs mcore's fused kernel"},
      {"async_tensor_model_parallel_allreduce",
       "--no-async-tensor-model-parallel-allreduce: deprecated in Megatron-LM"},
      {"tp_comm_overlap",
       "--tp-comm-overlap: tensor-parallel collectives are not overlapped with GEMMs"},
      {"tp_comm_bulk_wgrad", "--disable-tp-comm-bulk-wgrad: there is no TP comm overlap"},
      {"tp_comm_bulk_dgrad", "--disable-tp-comm-bulk-dgrad: there is no TP comm overlap"},
      {"cross_entropy_fusion_impl",
       "--cross-entropy-fusion-impl: the loss is always mcore's fused kernel"},
      {"log_straggler", "--log-straggler: no straggler detection"},
      {"logging_level", "--logging-level: mcore logs at one level"},
      {"optimizer_cpu_offload",
       "--optimizer-cpu-offload: on CPU ranks the optimizer state is in host memory already; "
       "with --device cuda it stays on the GPU"},
      {"manual_gc_interval", "--manual-gc-interval: there is no garbage collector"},
      {"align_grad_reduce",
       "--no-align-grad-reduce: each stage reduces its gradients when its backward ends"},
      {"ddp_num_buckets",
       "--ddp-num-buckets: buckets follow --ddp-bucket-size (numerics do not depend on them)"},
      {"te_rng_tracker", "--te-rng-tracker: dropout masks come from mcore's Philox streams"},
      {"deterministic_mode", "--deterministic-mode: mcore's CPU kernels are deterministic already"},
      {"log_energy", "--log-energy: no energy counters are read"},
      {"log_batch_size_to_tensorboard",
       "--log-batch-size-to-tensorboard: the batch size is always logged"},
      {"log_world_size_to_tensorboard",
       "--log-world-size-to-tensorboard: the world size is in the arguments block"},
      {"log_learning_rate_to_tensorboard",
       "--no-log-learning-rate-to-tensorboard: the learning rate is always logged"},
      {"enable_one_logger", "--no-one-logger: there is no one-logger"},
      {"one_logger_project", "--one-logger-project: there is no one-logger"},
      {"defer_embedding_wgrad_compute",
       "--defer-embedding-wgrad-compute: the output layer's weight gradient is computed in "
       "its backward"},
      {"moe_token_dispatcher_type",
       "--moe-token-dispatcher-type: tokens go to the experts' ranks with all-to-all "
       "(Megatron's alltoall dispatcher)"},
      {"moe_grouped_gemm", "--moe-grouped-gemm: the experts run one GEMM each"},
      {"moe_router_dtype", "--moe-router-dtype: the routing probabilities are computed in fp32"},
      {"moe_per_layer_logging",
       "--moe-per-layer-logging: load_balancing_loss is logged averaged over the layers"},
      {"moe_token_drop_policy", "--moe-token-drop-policy: no token is ever dropped"},
      {"moe_permute_fusion", "--moe-permute-fusion: mcore picks its own fusions"},
      {"use_precision_aware_optimizer",
       "--use-precision-aware-optimizer: main grads, main params and Adam state are fp32"},
      {"tensorboard_queue_size", "--tensorboard-queue-size: events are written as they come"},
      {"log_progress", "--log-progress: no progress.txt is written"},
      {"log_memory_to_tensorboard", "--log-memory-to-tensorboard: memory is always logged"},
      {"log_validation_ppl_to_tensorboard",
       "--log-validation-ppl-to-tensorboard: validation perplexity is always logged"},
      {"exit_signal_handler",
       "--exit-signal-handler: SIGTERM always saves a checkpoint (with --save) and exits"},
      {"create_attention_mask_in_dataloader",
       "--no-create-attention-mask-in-dataloader: masks are built only for "
       "--reset-attention-mask"},
  };
  for (const auto& [dest, note] : kNotes)
    if (a.is_set(dest)) warn(a, std::string(note) + "; the flag has no effect");
  // The ring (p2p) and all-to-all schemes compute the same attention as the all-gather one;
  // they differ only in memory and overlap.
  if (a.cp_comm_type) {
    std::string types;
    std::vector<std::string> seen;
    for (const auto& t : *a.cp_comm_type) {
      if (t == "allgather" || std::find(seen.begin(), seen.end(), t) != seen.end()) continue;
      seen.push_back(t);
      types += " " + t;
    }
    if (!types.empty())
      warn(a, "--cp-comm-type" + types +
                  ": context parallelism all-gathers the keys and values (Megatron's allgather) "
                  "in every layer; the results are the same");
  }
  if (a.hierarchical_context_parallel_sizes)
    warn(a,
         "--hierarchical-context-parallel-sizes: context parallelism all-gathers over the whole "
         "context-parallel group; the flag has no effect");
}

}  // namespace mcore::training
