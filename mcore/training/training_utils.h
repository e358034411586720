// Helpers of the training loop (Megatron's megatron/training/utils.py and training_log pieces):
// rank-0 printing, printf-style formatting, the next microbatches of a loader, the model's
// parameter norm for --log-params-norm, the ETA field, and the phase-timer report.
#pragma once

#include <functional>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "mcore/datasets/data_loader.h"
#include "mcore/timers/timers.h"
#include "mcore/training/checkpointing.h"

namespace mcore::training {

bool is_rank0();
void print_rank0(const std::string& s);
std::string strf(const char* fmt, ...) __attribute__((format(printf, 1, 2)));

// The next `n` microbatches of `loader`, or an error naming the split and iteration.
std::vector<datasets::GPTBatch> next_batches(datasets::DataLoader& loader, int64_t n,
                                             const std::string& split, int64_t iteration,
                                             int64_t consumed);

// True when a mixture-of-experts model keeps its expert weights on other ranks than the dense
// ones (expert or tensor parallelism): norms and counts over the model must then be summed over
// every rank, each copy of a weight counted once (experts_counted_once).
bool experts_spread(const Arguments& args);
// Whether this rank counts `p` in such a sum: a dense weight on data-parallel rank 0 (with
// context parallelism) and, unless it is tensor-parallel, TP rank 0; an expert weight
// (allreduce = false) on expert-data-parallel rank 0.
std::function<bool(const nn::Parameter&)> experts_counted_once();

// Megatron's --log-params-norm: the L2 norm of the whole model, each element counted once (no
// tensor-parallel replicas, no tied copy), over the model-parallel group, or over every rank
// when experts_spread.
double params_norm(const NamedParameters& params, const Arguments& args);

// H:MM:SS, or "-" for a negative or non-finite time.
std::string format_eta(double seconds);

// The timers of Megatron's training_log, in its order.
extern const std::vector<std::string> kTimersToLog;

// The report of `names` (ms per iteration: divided by `normalizer`), printed by rank 0 after
// the iteration line it belongs to. Collective over every rank.
void log_timers(timers::Timers& t, const std::vector<std::string>& names, double normalizer);

// Starts the level-1 timer `name`, after a barrier when `barrier` (Megatron's
// --barrier-with-L1-time) so that it measures this rank's phase, not its wait for the slowest
// rank to arrive.
void start_l1_timer(timers::Timers& t, const char* name, bool barrier);

// Megatron's MoE "load_balancing_loss" and "z_loss" for the step just run (training_log's
// track_moe_metrics), in that order, for those the run has: each router loss / its coefficient,
// averaged over the microbatches, the layers (each on its pipeline stage) and the data-parallel
// replicas. Collective over every rank.
std::vector<std::pair<std::string, double>> moe_aux_losses(const Arguments& args,
                                                           int64_t num_microbatches);

}  // namespace mcore::training
