// Model arguments from a checkpoint (Megatron-LM's --use-checkpoint-args, and what generate does
// by default): pretrain_gpt saves its arguments in the checkpoint's "args" section, as Megatron's
// printed block ("  name ...... value"). These helpers find the checkpoint under a --load
// directory, read that block back, and turn the saved model-shape and tokenizer values into
// flags placed before the command line's own, so that the command line still wins for anything
// it gives. Megatron forces some of them over the command line; here a flag the user typed is
// never overridden, and a conflicting shape then fails at load with the tensor's name.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "mcore/training/arguments.h"

namespace mcore::training {

// The checkpoint directory (iter_XXXXXXX or release) that --load names: the one its latest file
// points to (verified), the directory itself when it holds metadata.json, else the newest valid
// iter_* under it. Errors when there is none. verify: checksum every file of the latest one
// first (generate, which reads them all anyway; the trainer's load checks what it reads).
std::string checkpoint_dir_to_load(const std::string& load, bool verify = true);

// dest -> value of the saved arguments block.
std::map<std::string, std::string> parse_saved_args(const std::string& block);

// Flags reproducing the saved model shape and tokenizer for every dest the command line `cli`
// did not set (none when it names a --model preset, which sets them itself).
std::vector<std::string> flags_from_saved_args(const std::map<std::string, std::string>& saved,
                                               const Arguments& cli);

// argv with the model flags saved in `checkpoint_dir` (from checkpoint_dir_to_load) inserted
// after argv[0]: unchanged when the checkpoint saved no arguments.
std::vector<std::string> argv_with_checkpoint_args(const std::vector<std::string>& argv,
                                                   const Arguments& cli,
                                                   const std::string& checkpoint_dir);

}  // namespace mcore::training
