// Loss scalers for fp16 (and optionally bf16) training, as Megatron's grad_scaler.py: the loss
// is multiplied by scale() before backward, the optimizer multiplies the gradients by
// inv_scale(), and update(found_inf) adapts the scale.
//
// DynamicGradScaler (--initial-loss-scale, --min-loss-scale, --loss-scale-window,
// --hysteresis): `hysteresis` consecutive overflowing steps multiply the scale by
// backoff_factor (never below min_scale), and every further overflowing step does so again until
// a growth resets the tracker; `growth_interval` clean steps in a row multiply it by
// growth_factor. The scale is a float32 value, as Megatron's CUDA tensor is.
#pragma once

#include <cstdint>

#include <nlohmann/json.hpp>

namespace mcore::optimizer {

class MegatronGradScaler {
 public:
  explicit MegatronGradScaler(double initial_scale);
  virtual ~MegatronGradScaler() = default;

  float scale() const { return scale_; }
  // 1/scale computed in float64 and rounded to float32 (Megatron's inv_scale).
  float inv_scale() const;
  virtual void update(bool found_inf) = 0;
  virtual nlohmann::json state_dict() const = 0;
  virtual void load_state_dict(const nlohmann::json& state_dict) = 0;

 protected:
  float scale_;
};

// --loss-scale S: the scale never changes.
class ConstantGradScaler : public MegatronGradScaler {
 public:
  using MegatronGradScaler::MegatronGradScaler;
  void update(bool) override {}
  nlohmann::json state_dict() const override { return nlohmann::json::object(); }
  void load_state_dict(const nlohmann::json&) override {}
};

class DynamicGradScaler : public MegatronGradScaler {
 public:
  // Megatron-LM passes growth_factor 2.0 and backoff_factor 0.5.
  DynamicGradScaler(double initial_scale, double min_scale, double growth_factor,
                    double backoff_factor, int64_t growth_interval, int64_t hysteresis);

  void update(bool found_inf) override;
  // {"scale", "growth_tracker", "hysteresis_tracker"} (Megatron's keys).
  nlohmann::json state_dict() const override;
  void load_state_dict(const nlohmann::json& state_dict) override;

  float min_scale() const { return min_scale_; }
  int64_t growth_tracker() const { return growth_tracker_; }
  int64_t hysteresis_tracker() const { return hysteresis_tracker_; }

 private:
  float min_scale_, growth_factor_, backoff_factor_;
  int64_t growth_interval_, hysteresis_;
  int64_t growth_tracker_ = 0;
  int64_t hysteresis_tracker_;
};

}  // namespace mcore::optimizer
