// Megatron Core's named phase timers (megatron/core/timers.py): `--timing-log-level` 0, 1 or 2
// enables the timers of that level and below (0: checkpoint saves; 1: forward-backward, the
// gradient reductions, the optimizer and its parts; 2: per-microbatch compute, the batch
// generator and pipeline p2p), and at each log interval the trainer prints, on the last rank,
//
//   (min, max) time across ranks (ms):
//       forward-backward ...............................: (812.40, 815.93)
//
// (`--timing-log-option max|minmax|all`), each value the timer's accumulated time divided by the
// interval's iterations. Library code times its phases through the process-wide instance, so a
// program that never installs one pays one null check per phase:
//
//   ScopedTimer t("optimizer-inner-step", 1);   // no-op unless global() is set and level <= 1
//
// Timers measure wall time. On a GPU the owner installs a synchronize hook (the device's
// queue is drained at start and stop, as Megatron's timers call torch.cuda.synchronize()).
#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "mcore/comm/process_group.h"

namespace mcore::timers {

class Timer {
 public:
  void start();
  void stop();
  // Accumulated seconds (including a running interval); reset zeroes the total.
  double elapsed(bool reset = true);
  bool running() const { return running_; }

 private:
  friend class Timers;
  std::function<void()> sync_;
  bool noop_ = false;  // the stand-in for disabled levels: records nothing
  bool running_ = false;
  double total_ = 0;
  std::chrono::steady_clock::time_point started_;
};

class Timers {
 public:
  // log_option: "max", "minmax" or "all" (Megatron's --timing-log-option).
  Timers(int log_level, std::string log_option = "minmax");
  Timers(const Timers&) = delete;
  Timers& operator=(const Timers&) = delete;

  int log_level() const { return log_level_; }
  // The timer `name` (created at log_level on first use; a later call must agree), or a timer
  // that records nothing when log_level is above this object's level.
  Timer& operator()(const std::string& name, int log_level = 2);
  bool enabled(int log_level) const { return log_level <= log_level_; }
  // Called at every start and stop (e.g. a device synchronize).
  void set_synchronize(std::function<void()> sync);
  // Called before a ScopedTimer of level 1 starts (Megatron's --barrier-with-L1-time: a barrier,
  // so the timer measures this rank's phase, not its wait for the slowest rank).
  void set_level1_barrier(std::function<void()> barrier) { l1_barrier_ = std::move(barrier); }
  const std::function<void()>& level1_barrier() const { return l1_barrier_; }

  // The report of `names` (those that ran on some rank, in this order), times in ms divided by
  // `normalizer`; nullopt when none ran. Collective over `group` (every rank, same names).
  std::optional<std::string> report(const std::vector<std::string>& names,
                                    const comm::ProcessGroupPtr& group, double normalizer = 1.0,
                                    bool reset = true);
  // name -> max over the ranks in ms / normalizer, for the timers that ran (collective).
  std::map<std::string, double> max_times(const std::vector<std::string>& names,
                                          const comm::ProcessGroupPtr& group,
                                          double normalizer = 1.0, bool reset = true);

 private:
  // [rank][name] seconds, gathered over the group.
  std::vector<std::vector<double>> gather(const std::vector<std::string>& names,
                                          const comm::ProcessGroupPtr& group, bool reset);

  int log_level_;
  std::string log_option_;
  std::map<std::string, std::unique_ptr<Timer>> timers_;
  std::map<std::string, int> levels_;
  Timer dummy_;
  std::function<void()> sync_;
  std::function<void()> l1_barrier_;
};

// The process-wide timers used by library code (nullptr: timing off).
Timers* global();
void set_global(Timers* timers);

// Starts global()'s timer `name` for the scope when its level is enabled.
class ScopedTimer {
 public:
  ScopedTimer(const char* name, int log_level);
  ~ScopedTimer();
  ScopedTimer(const ScopedTimer&) = delete;
  ScopedTimer& operator=(const ScopedTimer&) = delete;

 private:
  Timer* timer_ = nullptr;
};

}  // namespace mcore::timers
