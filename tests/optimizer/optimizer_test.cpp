// MegatronOptimizer (Adam/AdamW, SGD) against PyTorch: 100 steps of torch.optim.AdamW / Adam /
// SGD(momentum) on the same gradients, with megatron-core's OptimizerParamScheduler setting
// per-group lr and weight decay (cosine warmup/decay, linear wd increment; biases and norms in
// the no-decay group) and torch.nn.utils.clip_grad_norm_ clipping (active on about half the
// steps). Then mixed precision (bf16 with fp32 main params, fp16 with the dynamic loss scaler),
// main_grad handling, state round trips and bad input.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "mcore/optimizer/optimizer.h"
#include "mcore/optimizer/optimizer_param_scheduler.h"
#include "tests/common/test_util.h"

namespace mcore::testing {
namespace {

using namespace mcore::optimizer;
using Named = std::vector<std::pair<std::string, nn::ParameterPtr>>;
constexpr const char* kGroup = "optimizer";
const std::vector<std::string> kNames = {"w1", "b1", "w2", "norm"};
constexpr int kSteps = 100;

Named make_params(DType dtype) {
  Named named;
  for (const std::string& n : kNames) {
    named.push_back(
        {n, std::make_shared<nn::Parameter>(load_ref(kGroup, "traj_p0_" + n).to(dtype))});
  }
  return named;
}

Tensor grad_at(const std::string& n, int64_t step) {
  return load_ref(kGroup, "traj_grads_" + n).select(0, step).contiguous().clone();
}

// gen_optimizer.py's OPT_SCHED.
OptimizerParamSchedulerConfig sched_config() {
  OptimizerParamSchedulerConfig c;
  c.init_lr = 1e-4;
  c.max_lr = 1e-2;
  c.min_lr = 1e-3;
  c.lr_warmup_steps = 10;
  c.lr_decay_steps = 80;
  c.lr_decay_style = LRDecayStyle::kCosine;
  c.start_wd = 0.0;
  c.end_wd = 0.1;
  c.wd_incr_steps = 100;
  c.wd_incr_style = WDIncrStyle::kLinear;
  return c;
}

OptimizerConfig opt_config(const std::string& tag) {
  OptimizerConfig c;
  c.optimizer = tag == "sgd" ? "sgd" : "adam";
  c.decoupled_weight_decay = tag != "adam_l2";
  c.lr = 1e-2;
  c.min_lr = 1e-3;
  c.adam_beta1 = 0.9;
  c.adam_beta2 = 0.95;
  c.adam_eps = 1e-8;
  c.sgd_momentum = 0.9;
  c.clip_grad = 1.0;
  return c;
}

// Tolerances vs torch (float32): the updates evaluate PyTorch's expressions in its order, so
// the parameters differ only by the clip factor's last float32 bit (torch computes the norm in
// float32, we in float64) and by contraction of one multiply-add, neither amplified over 100
// steps (Adam's step is bounded by lr; SGD's by lr * |momentum buffer|).
TEST(Optimizer, MatchesTorchOn100StepsWithSchedulerAndClipping) {
  for (const std::string tag : {"adamw", "adam_l2", "sgd"}) {
    SCOPED_TRACE(tag);
    Named named = make_params(DType::F32);
    auto opt = get_megatron_optimizer(opt_config(tag), named, nullptr, 0);
    ASSERT_EQ(opt->param_groups().size(), 2u);
    EXPECT_EQ(opt->param_groups()[0].params.size(), 2u);  // w1, w2
    EXPECT_EQ(opt->param_groups()[1].params.size(), 2u);  // b1, norm: 1-D, no decay
    OptimizerParamScheduler sched(opt.get(), sched_config());
    const Tensor norms = load_ref(kGroup, "traj_" + tag + "_norms");
    const Tensor lrs = load_ref(kGroup, "traj_" + tag + "_lrs");
    int clipped = 0;
    for (int64_t s = 0; s < kSteps; ++s) {
      for (auto& [n, p] : named) p->set_grad(grad_at(n, s));
      ASSERT_EQ(opt->param_groups()[0].lr, lrs.data<double>()[s]) << "step " << s;
      const StepResult r = opt->step();
      ASSERT_TRUE(r.success);
      ASSERT_TRUE(r.grad_norm.has_value());
      ASSERT_NEAR(*r.grad_norm, norms.data<double>()[s], 1e-6 * norms.data<double>()[s]);
      clipped += *r.grad_norm > 1.0;
      sched.step(1);
      for (auto& [n, p] : named) {
        const Tensor expected = load_ref(kGroup, "traj_" + tag + "_" + n).select(0, s);
        ASSERT_TRUE(tensors_close(*p, expected, 1e-6, 1e-7)) << n << " after step " << s + 1;
      }
    }
    EXPECT_GT(clipped, 20);
    EXPECT_LT(clipped, 80);
    EXPECT_EQ(opt->num_skipped_steps(), 0);
  }
}

// Runs `steps` AdamW steps from step `from` with the reference grads, given as fp32 main_grad
// (DDP) or as `grad` in the params' dtype.
void run_steps(MegatronOptimizer& opt, OptimizerParamScheduler& sched, Named& named, int64_t from,
               int64_t steps, bool as_main_grad) {
  for (int64_t s = from; s < from + steps; ++s) {
    for (auto& [n, p] : named) {
      if (as_main_grad) {
        p->main_grad = grad_at(n, s);
      } else {
        p->set_grad(grad_at(n, s).to(p->dtype()));
      }
    }
    ASSERT_TRUE(opt.step().success);
    sched.step(1);
  }
}

TEST(Optimizer, Bf16WithFp32MainGradsFollowsTheFp32PathExactly) {
  // Same starting values (the bf16-rounded ones) and the same fp32 grads: the fp32 main params
  // of the bf16 model are bitwise the params of an fp32 model, and the bf16 params are those
  // rounded once.
  OptimizerConfig c = opt_config("adamw");
  c.bf16 = true;
  Named bf = make_params(DType::BF16);
  Named fp;
  for (auto& [n, p] : bf) fp.push_back({n, std::make_shared<nn::Parameter>(p->to(DType::F32))});
  auto opt_bf = get_megatron_optimizer(c, bf, nullptr, 0);
  auto opt_fp = get_megatron_optimizer(opt_config("adamw"), fp, nullptr, 0);
  OptimizerParamScheduler s_bf(opt_bf.get(), sched_config()), s_fp(opt_fp.get(), sched_config());
  run_steps(*opt_bf, s_bf, bf, 0, kSteps, /*as_main_grad=*/true);
  run_steps(*opt_fp, s_fp, fp, 0, kSteps, /*as_main_grad=*/true);
  for (size_t i = 0; i < bf.size(); ++i) {
    EXPECT_TENSOR_CLOSE(opt_bf->main_param(*bf[i].second), *fp[i].second, 0, 0);
    EXPECT_TENSOR_CLOSE(*bf[i].second, fp[i].second->to(DType::BF16), 0, 0);
  }
}

TEST(Optimizer, Bf16GradsTrackFp32Training) {
  // bf16 model params and grads (8 significant bits), fp32 main params, against (a) the same
  // start in fp32 with fp32 grads and (b) torch's fp32 trajectory from the unrounded start.
  // Adam normalizes each step, so the grads' rounding moves the result by a small fraction of
  // how far the parameters travelled; (b) adds the initial rounding of the params (2^-9
  // relative), which Adam neither amplifies nor removes. Measured: (a) <= 0.3% of the
  // distance travelled, (b) <= the initial rounding + 0.1%; bounds 1% and rounding + 1%.
  OptimizerConfig c = opt_config("adamw");
  c.bf16 = true;
  Named bf = make_params(DType::BF16);
  Named fp;
  for (auto& [n, p] : bf) fp.push_back({n, std::make_shared<nn::Parameter>(p->to(DType::F32))});
  auto opt = get_megatron_optimizer(c, bf, nullptr, 0);
  auto opt_fp = get_megatron_optimizer(opt_config("adamw"), fp, nullptr, 0);
  OptimizerParamScheduler sched(opt.get(), sched_config()), sched_fp(opt_fp.get(), sched_config());
  run_steps(*opt, sched, bf, 0, kSteps, /*as_main_grad=*/false);
  run_steps(*opt_fp, sched_fp, fp, 0, kSteps, /*as_main_grad=*/false);
  auto max_abs_diff = [](const Tensor& a, const Tensor& b) {
    const Tensor x = a.to(DType::F64), y = b.to(DType::F64);
    double m = 0;
    for (int64_t i = 0; i < x.numel(); ++i) {
      m = std::max(m, std::fabs(x.data<double>()[i] - y.data<double>()[i]));
    }
    return m;
  };
  for (size_t i = 0; i < bf.size(); ++i) {
    const std::string& n = bf[i].first;
    const nn::Parameter& p = *bf[i].second;
    const Tensor torch_end = load_ref(kGroup, "traj_adamw_" + n).select(0, kSteps - 1);
    const Tensor p0 = load_ref(kGroup, "traj_p0_" + n);
    const Tensor& main = opt->main_param(p);
    const double moved = max_abs_diff(torch_end, p0);
    const double start_rounding = max_abs_diff(p0.to(DType::BF16), p0);
    const double gap_same_start = max_abs_diff(main, *fp[i].second);
    const double gap_torch = max_abs_diff(main, torch_end);
    EXPECT_LT(gap_same_start, 0.01 * moved) << n << ": moved " << moved;
    EXPECT_LT(gap_torch, start_rounding + 0.01 * moved)
        << n << ": moved " << moved << ", initial rounding " << start_rounding;
    EXPECT_TENSOR_CLOSE(p, main.to(DType::BF16), 0, 0);
  }
}

TEST(Optimizer, MainGradIsUsedInPlaceAsDdpExpects) {
  // fp32 params with DDP's main_grad and no grad: the same trajectory as with grads, and the
  // clipping scaled main_grad itself (Megatron's in-place semantics).
  Named a = make_params(DType::F32), b = make_params(DType::F32);
  auto opt_a = get_megatron_optimizer(opt_config("adamw"), a, nullptr, 0);
  auto opt_b = get_megatron_optimizer(opt_config("adamw"), b, nullptr, 0);
  OptimizerParamScheduler sa(opt_a.get(), sched_config()), sb(opt_b.get(), sched_config());
  run_steps(*opt_a, sa, a, 0, 10, false);
  run_steps(*opt_b, sb, b, 0, 10, true);
  for (size_t i = 0; i < a.size(); ++i) EXPECT_TENSOR_CLOSE(*a[i].second, *b[i].second, 0, 0);
  // Find a step that clips and check main_grad was scaled.
  for (int64_t s = 10; s < kSteps; ++s) {
    for (auto& [n, p] : b) p->main_grad = grad_at(n, s);
    const Tensor before = b[0].second->main_grad.clone();
    const StepResult r = opt_b->step();
    if (*r.grad_norm > 1.0) {
      const float factor = static_cast<float>(1.0 / (*r.grad_norm + 1e-6));
      EXPECT_EQ(b[0].second->main_grad.data<float>()[0], before.data<float>()[0] * factor);
      return;
    }
  }
  FAIL() << "no clipping step found";
}

// One fp16 step: the model grads are the fp32 reference grads times the loss scale, rounded to
// fp16 (what backward of a scaled loss produces).
void set_scaled_fp16_grads(Named& named, const MegatronOptimizer& opt, int64_t step) {
  for (auto& [n, p] : named) {
    Tensor g = grad_at(n, step);
    float* x = g.data<float>();
    for (int64_t i = 0; i < g.numel(); ++i) x[i] *= opt.get_loss_scale();
    p->set_grad(g.to(DType::F16));
  }
}

TEST(Optimizer, Fp16DynamicLossScalerSkipsOverflowsAndGrows) {
  OptimizerConfig c = opt_config("adamw");
  c.fp16 = true;
  c.initial_loss_scale = 1024;
  c.min_loss_scale = 1;
  c.loss_scale_window = 4;
  c.hysteresis = 2;
  Named h = make_params(DType::F16);
  auto opt = get_megatron_optimizer(c, h, nullptr, 0);
  ASSERT_NE(dynamic_cast<DynamicGradScaler*>(opt->grad_scaler()), nullptr);
  // fp32 twin fed with exactly the unscaled grads the fp16 optimizer sees.
  Named ref;
  for (auto& [n, p] : h) ref.push_back({n, std::make_shared<nn::Parameter>(p->to(DType::F32))});
  auto opt_ref = get_megatron_optimizer(opt_config("adamw"), ref, nullptr, 0);
  auto step_both = [&](int64_t s) {
    set_scaled_fp16_grads(h, *opt, s);
    const float inv = opt->grad_scaler()->inv_scale();
    for (size_t i = 0; i < h.size(); ++i) {
      Tensor g = h[i].second->grad().to(DType::F32);
      float* x = g.data<float>();
      for (int64_t j = 0; j < g.numel(); ++j) x[j] *= inv;
      ref[i].second->set_grad(g);
    }
    const StepResult r = opt->step();
    EXPECT_TRUE(r.success);
    EXPECT_TRUE(opt_ref->step().success);
  };
  auto expect_same = [&](const char* when) {
    for (size_t i = 0; i < h.size(); ++i) {
      EXPECT_TRUE(tensors_close(opt->main_param(*h[i].second), *ref[i].second, 0, 0)) << when;
      EXPECT_TRUE(tensors_close(*h[i].second, ref[i].second->to(DType::F16), 0, 0)) << when;
    }
  };
  step_both(0);
  step_both(1);
  expect_same("after clean steps");
  EXPECT_EQ(opt->get_loss_scale(), 1024.0f);

  // An inf in one grad: the step is skipped (params, main params and state untouched) and the
  // first overflow is absorbed by the hysteresis.
  auto inject_inf = [&](int64_t s, float bad) {
    set_scaled_fp16_grads(h, *opt, s);
    Tensor g = h[2].second->grad();
    g.data<Half>()[3] = Half(bad);
    std::vector<Tensor> before;
    for (auto& [n, p] : h) before.push_back(opt->main_param(*p).clone());
    const StepResult r = opt->step();
    EXPECT_FALSE(r.success);
    EXPECT_FALSE(r.grad_norm.has_value());
    for (size_t i = 0; i < h.size(); ++i) {
      EXPECT_TENSOR_CLOSE(opt->main_param(*h[i].second), before[i], 0, 0);
    }
  };
  inject_inf(2, std::numeric_limits<float>::infinity());
  EXPECT_EQ(opt->get_loss_scale(), 1024.0f);
  inject_inf(3, std::nanf(""));  // second in a row: halve
  EXPECT_EQ(opt->get_loss_scale(), 512.0f);
  EXPECT_EQ(opt->num_skipped_steps(), 2);
  expect_same("after skipped steps");

  // A window of 4 clean steps doubles the scale; the updates still equal the fp32 twin's.
  for (int64_t s = 4; s < 7; ++s) step_both(s);
  EXPECT_EQ(opt->get_loss_scale(), 512.0f);
  step_both(7);
  EXPECT_EQ(opt->get_loss_scale(), 1024.0f);
  expect_same("after growth");

  // The scaled loss carries the scale (backward of it scales every gradient).
  EXPECT_EQ(opt->scale_loss(from_vector<float>({0.75f})).item(), 768.0);
}

TEST(Optimizer, StateDictRoundTripResumesBitwise) {
  for (const std::string tag : {"adamw", "sgd"}) {
    SCOPED_TRACE(tag);
    OptimizerConfig c = opt_config(tag);
    c.bf16 = true;
    Named a = make_params(DType::BF16);
    auto opt_a = get_megatron_optimizer(c, a, nullptr, 0);
    OptimizerParamScheduler sa(opt_a.get(), sched_config());
    run_steps(*opt_a, sa, a, 0, 30, false);

    // "Checkpoint": copies of the model params, the optimizer and scheduler state.
    OptimizerStateDict sd = opt_a->state_dict();
    EXPECT_TRUE(sd.tensors.count("optimizer.state.fp32_param.w1"));
    EXPECT_TRUE(sd.tensors.count(tag == "sgd" ? "optimizer.state.momentum_buffer.b1"
                                              : "optimizer.state.exp_avg_sq.norm"));
    for (auto& [k, t] : sd.tensors) t = t.clone();
    sd.meta = nlohmann::json::parse(sd.meta.dump());  // through text, as a checkpoint would
    const nlohmann::json sched_sd = sa.state_dict();
    Named b;
    for (auto& [n, p] : a) b.push_back({n, std::make_shared<nn::Parameter>(p->clone())});
    auto opt_b = get_megatron_optimizer(c, b, nullptr, 0);
    opt_b->load_state_dict(sd);
    OptimizerParamScheduler sb(opt_b.get(), sched_config());
    sb.load_state_dict(sched_sd);

    run_steps(*opt_a, sa, a, 30, 30, false);
    run_steps(*opt_b, sb, b, 30, 30, false);
    for (size_t i = 0; i < a.size(); ++i) {
      EXPECT_TENSOR_CLOSE(*a[i].second, *b[i].second, 0, 0);
      EXPECT_TENSOR_CLOSE(opt_a->main_param(*a[i].second), opt_b->main_param(*b[i].second), 0, 0);
    }
  }
}

TEST(Optimizer, ParamGroupsFollowMegatronsRules) {
  auto w = std::make_shared<nn::Parameter>(zeros({3, 4}));
  auto bias = std::make_shared<nn::Parameter>(zeros({3, 4}));  // 2-D but flagged
  bias->no_weight_decay = true;
  auto ln = std::make_shared<nn::Parameter>(zeros({4}));
  auto frozen = std::make_shared<nn::Parameter>(zeros({2, 2}));
  frozen->set_requires_grad(false);
  const Named named = {{"w", w}, {"bias", bias}, {"ln", ln}, {"frozen", frozen}, {"w_tied", w}};
  auto groups = get_param_groups(named);
  ASSERT_EQ(groups.size(), 2u);
  ASSERT_EQ(groups[0].params.size(), 1u);
  EXPECT_EQ(groups[0].params[0].name, "w");
  EXPECT_EQ(groups[0].wd_mult, 1.0);
  ASSERT_EQ(groups[1].params.size(), 2u);
  EXPECT_EQ(groups[1].wd_mult, 0.0);
  OptimizerConfig c;
  c.weight_decay = 0.1;
  auto opt = get_megatron_optimizer(c, named, nullptr, 0);
  OptimizerParamSchedulerConfig sc;
  sc.max_lr = 1e-3;
  sc.start_wd = sc.end_wd = 0.1;
  sc.lr_decay_steps = 10;
  OptimizerParamScheduler sched(opt.get(), sc);
  EXPECT_EQ(opt->param_groups()[0].weight_decay, 0.1);
  EXPECT_EQ(opt->param_groups()[1].weight_decay, 0.0);
}

TEST(Optimizer, NormSkipsTpDuplicatesAndSharedCopiesButClipsThemAll) {
  auto sharded = std::make_shared<nn::Parameter>(zeros({2}));
  sharded->tensor_model_parallel = true;
  auto replicated = std::make_shared<nn::Parameter>(zeros({2}));
  auto tied = std::make_shared<nn::Parameter>(zeros({2}));
  tied->shared = true;
  const Named named = {{"sharded", sharded}, {"replicated", replicated}, {"tied", tied}};
  for (int tp_rank : {0, 1}) {
    OptimizerConfig c;
    c.clip_grad = 1.0;
    c.optimizer = "sgd";
    auto opt = get_megatron_optimizer(c, named, nullptr, tp_rank);
    sharded->set_grad(from_vector<float>({3.0f, 4.0f}));      // 25
    replicated->set_grad(from_vector<float>({0.0f, 12.0f}));  // 144, TP rank 0 only
    tied->set_grad(from_vector<float>({100.0f, 0.0f}));       // never
    const StepResult r = opt->step();
    EXPECT_DOUBLE_EQ(*r.grad_norm, tp_rank == 0 ? 13.0 : 5.0);
    const float f = static_cast<float>(1.0 / (*r.grad_norm + 1e-6));
    EXPECT_EQ(tied->grad().data<float>()[0], 100.0f * f);  // clipped like the rest
  }
}

TEST(Optimizer, CountsZerosAndSkipsParamsWithoutGrads) {
  Named named = make_params(DType::F32);
  OptimizerConfig c = opt_config("adamw");
  c.log_num_zeros_in_grad = true;
  auto opt = get_megatron_optimizer(c, named, nullptr, 0);
  const Tensor w2_before = named[2].second->clone();
  Tensor g = grad_at("w1", 0);
  g.data<float>()[0] = g.data<float>()[5] = 0.0f;
  named[0].second->set_grad(g);
  named[1].second->set_grad(zeros({13}));
  const StepResult r = opt->step();
  EXPECT_EQ(*r.num_zeros_in_grad, 2 + 13);
  EXPECT_TENSOR_CLOSE(*named[2].second, w2_before, 0, 0);  // no grad: untouched
  EXPECT_FALSE(opt->state_dict().meta["step"]["w2"].get<int64_t>() > 0);
  opt->zero_grad(/*set_to_none=*/false);
  EXPECT_EQ(named[0].second->grad().data<float>()[3], 0.0f);
  opt->zero_grad();
  EXPECT_FALSE(named[0].second->grad().defined());
}

TEST(Optimizer, NanGradNormIsAnErrorNamingTheIteration) {
  OptimizerConfig c = opt_config("adamw");
  c.bf16 = true;  // no loss scaler: nothing absorbs the NaN
  Named named = make_params(DType::BF16);
  auto opt = get_megatron_optimizer(c, named, nullptr, 0);
  opt->set_iteration(41);
  const Tensor before = named[0].second->clone();
  for (auto& [n, p] : named) p->set_grad(grad_at(n, 0).to(DType::BF16));
  named[1].second->grad().data<BFloat16>()[2] = BFloat16(std::nanf(""));
  try {
    opt->step();
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("iteration 42: found NaN in grad norm"), std::string::npos)
        << e.what();
  }
  EXPECT_TENSOR_CLOSE(*named[0].second, before, 0, 0);
}

TEST(Optimizer, RejectsBadInput) {
  auto expect_error = [](auto&& fn, const std::string& needle) {
    try {
      fn();
      ADD_FAILURE() << "expected an error mentioning '" << needle << "'";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  Named half = {{"h", std::make_shared<nn::Parameter>(zeros({2}, DType::F16))}};
  OptimizerConfig no_scaler;  // fp16 params, fp16 flag off: no scaler made
  expect_error([&] { get_megatron_optimizer(no_scaler, half, nullptr, 0); }, "loss scaler");
  auto p = std::make_shared<nn::Parameter>(zeros({2}));
  auto q = std::make_shared<nn::Parameter>(zeros({2}));
  expect_error(
      [&] {
        get_megatron_optimizer({}, {{"x", p}, {"x", q}}, nullptr, 0);
      },
      "two parameters named 'x'");
  OptimizerConfig bad;
  bad.optimizer = "lamb";
  expect_error([&] { get_megatron_optimizer(bad, {{"x", p}}, nullptr, 0); }, "'lamb'");

  auto opt = get_megatron_optimizer({}, {{"x", p}}, nullptr, 0);
  p->main_grad = zeros({3});
  expect_error([&] { opt->step(); }, "[3] but the parameter [2]");
  p->main_grad = Tensor();

  p->set_grad(zeros({2}));
  opt->step();
  OptimizerStateDict sd = opt->state_dict();
  sd.tensors["optimizer.state.exp_avg.x"] = zeros({5});
  expect_error([&] { opt->load_state_dict(sd); }, "has shape [5] but the parameter's state is [2]");
  sd.tensors.erase("optimizer.state.exp_avg.x");
  expect_error([&] { opt->load_state_dict(sd); }, "no 'optimizer.state.exp_avg.x'");
  auto sgd_cfg = OptimizerConfig{};
  sgd_cfg.optimizer = "sgd";
  auto sgd = get_megatron_optimizer(sgd_cfg, {{"x", p}}, nullptr, 0);
  expect_error([&] { sgd->load_state_dict(opt->state_dict()); }, "optimizer 'adam'");
}

}  // namespace
}  // namespace mcore::testing
