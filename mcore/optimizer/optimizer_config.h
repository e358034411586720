// OptimizerConfig: Megatron Core's optimizer_config.py for the fields this library implements,
// with Megatron's defaults. Megatron-LM's flags map one to one: --optimizer, --lr, --min-lr,
// --weight-decay, --fp16, --bf16, --loss-scale, --initial-loss-scale, --min-loss-scale,
// --loss-scale-window, --hysteresis, --adam-beta1/2, --adam-eps, --sgd-momentum, --clip-grad,
// --log-num-zeros-in-grad, --check-for-nan-in-loss-and-grad.
#pragma once

#include <cstdint>
#include <string>

namespace mcore::optimizer {

struct OptimizerConfig {
  std::string optimizer = "adam";  // "adam" or "sgd"
  double lr = 1e-3;                // the groups' max_lr (the scheduler moves the actual lr)
  double min_lr = 0.0;
  double weight_decay = 0.01;

  // Mixed precision: bf16/fp16 model params get fp32 main params. fp16 needs a loss scale.
  bool fp16 = false;
  bool bf16 = false;
  double loss_scale = 0.0;  // > 0: constant scale; 0: dynamic for fp16, none for bf16
  double initial_loss_scale = 4294967296.0;  // 2^32
  double min_loss_scale = 1.0;
  int64_t loss_scale_window = 1000;
  int64_t hysteresis = 2;

  double adam_beta1 = 0.9;
  double adam_beta2 = 0.999;
  double adam_eps = 1e-8;
  // AdamW (decoupled weight decay, Megatron's default); false: L2 regularization as torch Adam.
  bool decoupled_weight_decay = true;

  double sgd_momentum = 0.9;

  double clip_grad = 1.0;  // global L2 norm; 0 disables clipping and the norm
  bool log_num_zeros_in_grad = false;
  // A NaN or Inf grad norm (with no dynamic loss scaler to absorb it) is an error naming the
  // iteration and rank, before any parameter is touched.
  bool check_for_nan_in_grad = true;
};

}  // namespace mcore::optimizer
