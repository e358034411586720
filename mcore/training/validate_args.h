// The checks and derived values of Megatron-LM's validate_args, and the `--model` preset fill,
// for mcore::training::Arguments (see arguments.h for the entry points).
#pragma once

#include "mcore/training/arguments.h"

namespace mcore::training {

// Fills the model-shape fields from the preset named by args.model, for every field the
// command line or config file did not set. Errors list the known presets.
void apply_model_preset(Arguments& args);

// Megatron flags that select among implementations or logging extras mcore doesn't have are
// accepted so existing launch scripts run; each one given prints (rank 0) that it changes
// nothing here (flag_notes.cpp).
void note_flags_without_effect(const Arguments& args);

}  // namespace mcore::training
