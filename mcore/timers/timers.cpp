#include "mcore/timers/timers.h"

#include <algorithm>
#include <cstdio>

#include "mcore/base/error.h"
#include "mcore/comm/distributed.h"
#include "mcore/tensor/factory.h"

namespace mcore::timers {

namespace {

Timers* g_timers = nullptr;

std::string pad_name(const std::string& name) {
  std::string s = name + " ";
  if (s.size() < 48) s.append(48 - s.size(), '.');
  return s;
}

std::string fmt(const char* f, double a, double b = 0) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), f, a, b);
  return buf;
}

}  // namespace

void Timer::start() {
  if (noop_) return;
  MCORE_CHECK(!running_) << "timer started twice without a stop";
  if (sync_) sync_();
  started_ = std::chrono::steady_clock::now();
  running_ = true;
}

void Timer::stop() {
  if (noop_) return;
  MCORE_CHECK(running_) << "timer stopped without a start";
  if (sync_) sync_();
  total_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - started_).count();
  running_ = false;
}

double Timer::elapsed(bool reset) {
  const bool was_running = running_;
  if (was_running) stop();
  const double t = total_;
  if (reset) total_ = 0;
  if (was_running) start();
  return t;
}

Timers::Timers(int log_level, std::string log_option)
    : log_level_(log_level), log_option_(std::move(log_option)) {
  dummy_.noop_ = true;
  MCORE_CHECK(log_level >= 0 && log_level <= 2)
      << "timing log level " << log_level << " must be 0, 1 or 2";
  MCORE_CHECK(log_option_ == "max" || log_option_ == "minmax" || log_option_ == "all")
      << "timing log option '" << log_option_ << "' must be max, minmax or all";
}

Timer& Timers::operator()(const std::string& name, int log_level) {
  MCORE_CHECK(log_level >= 0 && log_level <= 2)
      << "timer '" << name << "': log level " << log_level << " must be 0, 1 or 2";
  auto it = timers_.find(name);
  if (it != timers_.end()) {
    MCORE_CHECK(levels_.at(name) == log_level) << "timer '" << name << "' was created at log level "
                                               << levels_.at(name) << ", not " << log_level;
    return *it->second;
  }
  if (log_level > log_level_) return dummy_;
  auto t = std::make_unique<Timer>();
  t->sync_ = sync_;
  levels_[name] = log_level;
  return *(timers_[name] = std::move(t));
}

void Timers::set_synchronize(std::function<void()> sync) {
  sync_ = std::move(sync);
  for (auto& [name, t] : timers_) t->sync_ = sync_;
}

std::vector<std::vector<double>> Timers::gather(const std::vector<std::string>& names,
                                                const comm::ProcessGroupPtr& group, bool reset) {
  const int64_t n = static_cast<int64_t>(names.size());
  Tensor mine = zeros({n}, DType::F64);
  for (int64_t i = 0; i < n; ++i) {
    auto it = timers_.find(names[i]);
    if (it != timers_.end()) mine.data<double>()[i] = it->second->elapsed(reset);
  }
  const int size = group ? group->size() : 1;
  std::vector<std::vector<double>> out(size, std::vector<double>(n, 0.0));
  if (size == 1) {
    for (int64_t i = 0; i < n; ++i) out[0][i] = mine.data<double>()[i];
    return out;
  }
  const Device dev = comm::group_device(*group);
  Tensor all = zeros({size * n}, {DType::F64, dev});
  Tensor in = mine.to(dev);
  group->all_gather(all, in);
  const Tensor host = all.to(Device::cpu());
  for (int r = 0; r < size; ++r)
    for (int64_t i = 0; i < n; ++i) out[r][i] = host.data<double>()[r * n + i];
  return out;
}

std::map<std::string, double> Timers::max_times(const std::vector<std::string>& names,
                                                const comm::ProcessGroupPtr& group,
                                                double normalizer, bool reset) {
  MCORE_CHECK(normalizer > 0) << "timer normalizer must be positive";
  const auto t = gather(names, group, reset);
  std::map<std::string, double> m;
  for (size_t i = 0; i < names.size(); ++i) {
    double mx = 0;
    for (const auto& row : t) mx = std::max(mx, row[i]);
    if (mx > 0) m[names[i]] = mx * 1e3 / normalizer;
  }
  return m;
}

std::optional<std::string> Timers::report(const std::vector<std::string>& names,
                                          const comm::ProcessGroupPtr& group, double normalizer,
                                          bool reset) {
  MCORE_CHECK(normalizer > 0) << "timer normalizer must be positive";
  const auto t = gather(names, group, reset);
  const double scale = 1e3 / normalizer;  // seconds -> ms per iteration
  std::string s;
  if (log_option_ == "all") {
    for (size_t i = 0; i < names.size(); ++i) {
      bool first = true;
      for (size_t r = 0; r < t.size(); ++r) {
        if (t[r][i] <= 0) continue;
        if (first) s += "\n  " + names[i] + ":";
        first = false;
        s += "\n     rank " + fmt("%2.0f", double(r)) + ": " + fmt("%.2f", t[r][i] * scale);
      }
    }
    if (s.empty()) return std::nullopt;
    return "times across ranks (ms):" + s;
  }
  const bool max_only = log_option_ == "max";
  for (size_t i = 0; i < names.size(); ++i) {
    // Ranks that never ran the timer (another pipeline stage's phases) are left out.
    double mn = 0, mx = 0;
    bool any = false;
    for (const auto& row : t) {
      if (row[i] <= 0) continue;
      mn = any ? std::min(mn, row[i]) : row[i];
      mx = any ? std::max(mx, row[i]) : row[i];
      any = true;
    }
    if (!any) continue;
    s += "\n    " + pad_name(names[i]) + ": " +
         (max_only ? fmt("%.2f", mx * scale) : fmt("(%.2f, %.2f)", mn * scale, mx * scale));
  }
  if (s.empty()) return std::nullopt;
  return (max_only ? "max time across ranks (ms):" : "(min, max) time across ranks (ms):") + s;
}

Timers* global() {
  return g_timers;
}

void set_global(Timers* timers) {
  g_timers = timers;
}

ScopedTimer::ScopedTimer(const char* name, int log_level) {
  Timers* t = global();
  if (!t || !t->enabled(log_level)) return;
  timer_ = &(*t)(name, log_level);
  if (log_level == 1 && t->level1_barrier()) t->level1_barrier()();
  timer_->start();
}

ScopedTimer::~ScopedTimer() {
  if (timer_) timer_->stop();
}

}  // namespace mcore::timers
