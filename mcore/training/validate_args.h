// The checks and derived values of Megatron-LM's validate_args, and the `--model` preset fill,
// for mcore::training::Arguments (see arguments.h for the entry points).
#pragma once

#include "mcore/training/arguments.h"

namespace mcore::training {

// Fills the model-shape fields from the preset named by args.model, for every field the
// command line or config file did not set. Errors list the known presets.
void apply_model_preset(Arguments& args);

}  // namespace mcore::training
