// Checkpoint conversion between Hugging Face model directories and mcore's trainer checkpoints
// (tools/convert_checkpoint; Megatron-LM's tools/checkpoint/convert.py with its HF loaders and
// savers).
//
// hf-to-mcore builds the real GPTModel (TP = PP = 1) from config.json, fills its parameters from
// the safetensors weights and saves it with save_trainer_checkpoint, so the result is what
// pretrain_gpt itself would save (model and arguments; no optimizer or RNG state, as Megatron's
// converters): <save>/release/ with latest_checkpointed_iteration.txt = "release". pretrain_gpt
// --load it with --finetune (or --no-load-optim --no-load-rng); generate --load it as is.
//
// mcore-to-hf loads a checkpoint saved under any TP/PP layout into one GPTModel and writes
// config.json + model.safetensors (+ the tokenizer files the checkpoint's arguments name) that
// transformers' from_pretrained loads.
//
// Both directions write under a staging name (<out>.tmp-<pid>) and rename when complete: a
// failed conversion leaves no directory that looks usable, and touches no directory it did not
// create. hf-to-mcore keeps config.json's vocabulary size and bos/eos/pad ids in the
// checkpoint's metadata (kHFImportSection) for the export to write back.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "mcore/hf_checkpoint/hf_config.h"

namespace mcore::hf_checkpoint {

struct HFToMcoreOptions {
  std::string hf_dir;
  std::string save_dir;                  // must not exist, or be empty; "dir/" = "dir"
  std::string params_dtype = "float32";  // "bfloat16" (--bf16), "float16" (--fp16)
  int64_t make_vocab_size_divisible_by = 128;
};
struct HFToMcoreResult {
  std::string checkpoint_dir;  // <save>/release
  HFArchitecture architecture = HFArchitecture::kLlama;
  int64_t vocab_size = 0, padded_vocab_size = 0;
  int64_t seq_length = 0;                    // saved: min(max_position_embeddings, 4096)
  std::vector<std::string> model_flags;      // pretrain_gpt's flags for this model
  std::vector<std::string> tokenizer_flags;  // from the tokenizer files found in hf_dir
  nlohmann::json special_tokens;             // config.json's bos/eos/pad ids, kept
  std::vector<std::string> warnings;
};
HFToMcoreResult convert_hf_to_mcore(const HFToMcoreOptions& options);

struct McoreToHFOptions {
  std::string load_dir;               // a --save directory or one checkpoint directory in it
  std::string save_hf_dir;            // must not exist, or be empty; "dir/" = "dir"
  std::string architecture;           // empty: inferred from the model
  std::optional<int64_t> vocab_size;  // Hugging Face rows; default: see export_vocab_size
};
struct McoreToHFResult {
  std::string checkpoint_dir;
  HFArchitecture architecture = HFArchitecture::kLlama;
  int64_t vocab_size = 0, padded_vocab_size = 0;
  std::vector<std::string> copied_files;  // tokenizer files written beside the weights
  std::vector<std::string> warnings;
};
McoreToHFResult convert_mcore_to_hf(const McoreToHFOptions& options);

}  // namespace mcore::hf_checkpoint
