// A trainer checkpoint's model on one process: the GPTModel its saved arguments describe (the
// "args" section pretrain_gpt and convert_checkpoint write), built with TP = PP = 1 and filled
// from the checkpoint, whatever tensor/pipeline layout saved it (the loader stitches the
// shards). Used to export checkpoints to Hugging Face and by tests that run the model.
#pragma once

#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "mcore/models/gpt/gpt_model.h"
#include "mcore/training/arguments.h"

namespace mcore::hf_checkpoint {

// The metadata section convert_checkpoint's hf-to-mcore adds to the checkpoint it writes: what
// the Hugging Face config.json said beyond the model shape, for an export to write back -
// {"vocab_size": V (Hugging Face's rows, which may exceed the tokenizer's ids), "bos_token_id",
// "eos_token_id", "pad_token_id" (those config.json had)}. pretrain_gpt does not carry it into
// the checkpoints it saves; exports of those derive the values from the tokenizer.
inline constexpr const char* kHFImportSection = "hf_import";

struct CheckpointModel {
  training::Arguments args;  // the saved model and tokenizer arguments, re-parsed
  std::string dir;           // the iter_XXXXXXX or release directory loaded
  int64_t iteration = 0;
  int64_t padded_vocab_size = 0;
  DType dtype = DType::F32;                             // of the model's parameters
  nlohmann::json hf_import = nlohmann::json::object();  // kHFImportSection, when present
  std::shared_ptr<models::GPTModel> model;
};

// Loads the model under `load`: a --save directory (the checkpoint its latest file names, else
// its newest valid one) or one checkpoint directory. keep_dtype: parameters in the checkpoint's
// precision (bf16/fp16 runs' weights stay bf16/fp16), else fp32. Dropout is off.
CheckpointModel load_checkpoint_model(const std::string& load, bool keep_dtype);

}  // namespace mcore::hf_checkpoint
