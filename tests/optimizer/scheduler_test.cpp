// OptimizerParamScheduler against megatron-core's own OptimizerParamScheduler
// (tests/reference/gen_optimizer.py): every lr and weight decay of three parameter groups
// (default, no-decay, per-group max/min lr and wd range) after every step, for every decay
// style, WSD annealing style and weight-decay increment style, with per-iteration and
// per-sample increments. The comparison is exact: the formulas are evaluated with Python's
// operations in Python's order (contraction off, the same libm calls).
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <sstream>

#include "mcore/optimizer/optimizer.h"
#include "mcore/optimizer/optimizer_param_scheduler.h"
#include "tests/common/test_util.h"

namespace mcore::testing {
namespace {

using namespace mcore::optimizer;
constexpr const char* kGroup = "optimizer";

std::string read_text(const std::string& path) {
  std::ifstream f(path);
  EXPECT_TRUE(f.good()) << "missing reference file " << path;
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

std::vector<std::string> schedule_names() {
  std::vector<std::string> names;
  std::istringstream in(read_text(ref_dir() + "/optimizer/sched_names.txt"));
  for (std::string line; std::getline(in, line);) {
    if (!line.empty()) names.push_back(line);
  }
  return names;
}

// A stand-in optimizer holding only parameter groups (the scheduler needs nothing else).
class GroupsOnly : public MegatronOptimizer {
 public:
  explicit GroupsOnly(std::vector<ParamGroup> groups)
      : MegatronOptimizer(std::move(groups), OptimizerConfig{}, nullptr, nullptr, 0) {}

 protected:
  std::vector<std::string> state_names() const override { return {}; }
  void update(Slot&, const ParamGroup&) override {}
  const char* name() const override { return "none"; }
};

OptimizerParamSchedulerConfig config_from(const Tensor& c) {
  const double* v = c.data<double>();
  OptimizerParamSchedulerConfig cfg;
  cfg.init_lr = v[0];
  cfg.max_lr = v[1];
  cfg.min_lr = v[2];
  cfg.lr_warmup_steps = static_cast<int64_t>(v[3]);
  cfg.lr_decay_steps = static_cast<int64_t>(v[4]);
  cfg.lr_decay_style = static_cast<LRDecayStyle>(static_cast<int>(v[5]));
  cfg.start_wd = v[6];
  cfg.end_wd = v[7];
  cfg.wd_incr_steps = static_cast<int64_t>(v[8]);
  cfg.wd_incr_style = static_cast<WDIncrStyle>(static_cast<int>(v[9]));
  if (cfg.lr_decay_style == LRDecayStyle::kWSD) cfg.wsd_decay_steps = static_cast<int64_t>(v[10]);
  cfg.lr_wsd_decay_style = static_cast<WSDDecayStyle>(static_cast<int>(v[11]));
  return cfg;
}

std::vector<ParamGroup> groups_from(const Tensor& overrides, bool wd_override) {
  std::vector<ParamGroup> groups;
  const double* o = overrides.data<double>();  // [3, 5]: wd_mult, max_lr, min_lr, start/end wd
  for (int g = 0; g < 3; ++g) {
    ParamGroup pg;
    pg.wd_mult = o[g * 5];
    if (!std::isnan(o[g * 5 + 1])) pg.max_lr = o[g * 5 + 1];
    if (!std::isnan(o[g * 5 + 2])) pg.min_lr = o[g * 5 + 2];
    if (wd_override && !std::isnan(o[g * 5 + 3])) pg.start_wd = o[g * 5 + 3];
    if (wd_override && !std::isnan(o[g * 5 + 4])) pg.end_wd = o[g * 5 + 4];
    groups.push_back(pg);
  }
  return groups;
}

TEST(OptimizerParamScheduler, MatchesMegatronEveryStyleEveryStep) {
  const std::vector<std::string> names = schedule_names();
  ASSERT_EQ(names.size(), 11u);  // 7 decay configurations + 4 WSD annealing styles
  const Tensor overrides = load_ref(kGroup, "sched_group_overrides");
  for (const std::string& name : names) {
    SCOPED_TRACE(name);
    const Tensor cfg_t = load_ref(kGroup, "sched_" + name + "_config");
    const Tensor lr = load_ref(kGroup, "sched_" + name + "_lr");
    const Tensor wd = load_ref(kGroup, "sched_" + name + "_wd");
    const Tensor num = load_ref(kGroup, "sched_" + name + "_num_steps");
    const int64_t increment = static_cast<int64_t>(cfg_t.data<double>()[12]);
    GroupsOnly opt(groups_from(overrides, cfg_t.data<double>()[13] != 0.0));
    OptimizerParamScheduler sched(&opt, config_from(cfg_t));
    for (int64_t s = 0; s < lr.size(0); ++s) {
      if (s > 0) sched.step(increment);
      ASSERT_EQ(sched.num_steps(), static_cast<int64_t>(num.data<double>()[s]));
      for (int g = 0; g < 3; ++g) {
        // Bitwise: same IEEE operations in the same order as Megatron's Python.
        ASSERT_EQ(opt.param_groups()[g].lr, lr.data<double>()[s * 3 + g])
            << "lr, group " << g << ", num_steps " << sched.num_steps();
        ASSERT_EQ(opt.param_groups()[g].weight_decay, wd.data<double>()[s * 3 + g])
            << "weight decay, group " << g << ", num_steps " << sched.num_steps();
      }
      ASSERT_EQ(sched.get_lr(), lr.data<double>()[s * 3]);
    }
  }
}

OptimizerParamSchedulerConfig cosine_config() {
  return config_from(load_ref(kGroup, "sched_cosine_config"));
}

TEST(OptimizerParamScheduler, StateDictHasMegatronsKeysAndValues) {
  OptimizerParamScheduler sched(nullptr, cosine_config());
  sched.step(140);  // the generator saved its state after 140 steps of 1
  const auto expected =
      nlohmann::json::parse(read_text(ref_dir() + "/optimizer/sched_cosine_state_dict.json"));
  EXPECT_EQ(sched.state_dict(), expected) << sched.state_dict().dump() << "\nvs\n"
                                          << expected.dump();
}

TEST(OptimizerParamScheduler, LoadStateDictResumesTheSchedule) {
  OptimizerParamScheduler a(nullptr, cosine_config());
  a.step(37);
  OptimizerParamScheduler b(nullptr, cosine_config());
  b.load_state_dict(a.state_dict());
  EXPECT_EQ(b.num_steps(), 37);
  for (int i = 0; i < 50; ++i) {
    a.step(1);
    b.step(1);
    ASSERT_EQ(a.get_lr(), b.get_lr());
    ASSERT_EQ(a.get_wd(), b.get_wd());
  }
}

TEST(OptimizerParamScheduler, CheckpointValuesOverrideOrMustMatch) {
  OptimizerParamSchedulerConfig saved_cfg = cosine_config();
  OptimizerParamScheduler saved(nullptr, saved_cfg);
  saved.step(20);
  const nlohmann::json sd = saved.state_dict();

  OptimizerParamSchedulerConfig other = saved_cfg;
  other.max_lr = 2 * saved_cfg.max_lr;
  other.lr_decay_steps = saved_cfg.lr_decay_steps + 50;

  // use_checkpoint (Megatron's default): the checkpoint's values win.
  OptimizerParamScheduler use(nullptr, other);
  use.load_state_dict(sd);
  EXPECT_EQ(use.config().max_lr, saved_cfg.max_lr);
  EXPECT_EQ(use.config().lr_decay_steps, saved_cfg.lr_decay_steps);
  EXPECT_EQ(use.get_lr(), saved.get_lr());

  // override: this run's values win, the step count still comes from the checkpoint.
  other.use_checkpoint_opt_param_scheduler = false;
  other.override_opt_param_scheduler = true;
  OptimizerParamScheduler keep(nullptr, other);
  keep.load_state_dict(sd);
  EXPECT_EQ(keep.config().max_lr, other.max_lr);
  EXPECT_EQ(keep.num_steps(), 20);

  // neither: a mismatch is an error naming the value.
  other.override_opt_param_scheduler = false;
  OptimizerParamScheduler strict(nullptr, other);
  try {
    strict.load_state_dict(sd);
    FAIL() << "expected a mismatch error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("learning rate"), std::string::npos) << e.what();
  }
  // ... but equal values load.
  OptimizerParamScheduler strict_ok(nullptr, [&] {
    auto c = saved_cfg;
    c.use_checkpoint_opt_param_scheduler = false;
    return c;
  }());
  strict_ok.load_state_dict(sd);
  EXPECT_EQ(strict_ok.get_lr(), saved.get_lr());
}

TEST(OptimizerParamScheduler, AcceptsMegatronsOldKeyNames) {
  OptimizerParamScheduler sched(nullptr, cosine_config());
  nlohmann::json old = sched.state_dict();
  old["start_lr"] = old["max_lr"];
  old.erase("max_lr");
  old["warmup_iter"] = old["lr_warmup_steps"];
  old.erase("lr_warmup_steps");
  old["end_iter"] = old["lr_decay_steps"];
  old.erase("lr_decay_steps");
  old["decay_style"] = old["lr_decay_style"];
  old.erase("lr_decay_style");
  old["num_iters"] = 12;
  old.erase("num_steps");
  old.erase("start_wd");  // pre-weight-decay-schedule checkpoints have none of these
  old.erase("end_wd");
  old.erase("wd_incr_style");
  old.erase("wd_incr_steps");
  OptimizerParamScheduler loaded(nullptr, cosine_config());
  loaded.load_state_dict(old);
  EXPECT_EQ(loaded.num_steps(), 12);
}

void expect_error(const OptimizerParamSchedulerConfig& c, const std::string& needle) {
  try {
    OptimizerParamScheduler s(nullptr, c);
    ADD_FAILURE() << "expected an error mentioning '" << needle << "'";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

TEST(OptimizerParamScheduler, RejectsInconsistentConfigs) {
  OptimizerParamSchedulerConfig ok = cosine_config();
  auto c = ok;
  c.min_lr = 2 * c.max_lr;
  expect_error(c, "below min_lr");
  c = ok;
  c.lr_warmup_steps = c.lr_decay_steps;
  expect_error(c, "must be below lr_decay_steps");
  c = ok;
  c.lr_decay_style = LRDecayStyle::kWSD;
  expect_error(c, "wsd_decay_steps");
  c = ok;
  c.wd_incr_style = WDIncrStyle::kConstant;  // start 0, end 0.1
  expect_error(c, "start_wd == end_wd");
  c = ok;
  c.override_opt_param_scheduler = true;  // with use_checkpoint (the default)
  expect_error(c, "both override_opt_param_scheduler and use_checkpoint");
  try {
    parse_lr_decay_style("cosin");
    ADD_FAILURE() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("inverse-square-root"), std::string::npos) << e.what();
  }
  EXPECT_EQ(parse_wsd_decay_style("minus_sqrt"), WSDDecayStyle::kMinusSqrt);
  EXPECT_EQ(std::string(to_string(parse_lr_decay_style("WSD"))), "WSD");
}

}  // namespace
}  // namespace mcore::testing
