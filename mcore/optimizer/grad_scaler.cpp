#include "mcore/optimizer/grad_scaler.h"

#include <algorithm>

#include "mcore/base/error.h"

namespace mcore::optimizer {

MegatronGradScaler::MegatronGradScaler(double initial_scale)
    : scale_(static_cast<float>(initial_scale)) {
  MCORE_CHECK(initial_scale > 0.0)
      << "grad scaler: initial loss scale must be > 0, got " << initial_scale;
}

float MegatronGradScaler::inv_scale() const {
  return static_cast<float>(1.0 / static_cast<double>(scale_));
}

DynamicGradScaler::DynamicGradScaler(double initial_scale, double min_scale, double growth_factor,
                                     double backoff_factor, int64_t growth_interval,
                                     int64_t hysteresis)
    : MegatronGradScaler(initial_scale),
      min_scale_(static_cast<float>(min_scale)),
      growth_factor_(static_cast<float>(growth_factor)),
      backoff_factor_(static_cast<float>(backoff_factor)),
      growth_interval_(growth_interval),
      hysteresis_(hysteresis),
      hysteresis_tracker_(hysteresis) {
  MCORE_CHECK(min_scale > 0.0 && min_scale <= initial_scale)
      << "DynamicGradScaler: min loss scale (--min-loss-scale) " << min_scale
      << " must be in (0, initial loss scale " << initial_scale << "]";
  MCORE_CHECK(growth_factor > 1.0)
      << "DynamicGradScaler: growth factor " << growth_factor << " must be > 1";
  MCORE_CHECK(backoff_factor > 0.0 && backoff_factor < 1.0)
      << "DynamicGradScaler: backoff factor " << backoff_factor << " must be in (0, 1)";
  MCORE_CHECK(growth_interval > 0) << "DynamicGradScaler: growth interval (--loss-scale-window) "
                                   << growth_interval << " must be > 0";
  MCORE_CHECK(hysteresis > 0) << "DynamicGradScaler: hysteresis (--hysteresis) " << hysteresis
                              << " must be > 0";
}

void DynamicGradScaler::update(bool found_inf) {
  if (found_inf) {
    growth_tracker_ = 0;
    hysteresis_tracker_ -= 1;
    // Out of hysteresis: back off on this and every further overflow until the next growth.
    if (hysteresis_tracker_ <= 0) scale_ = std::max(scale_ * backoff_factor_, min_scale_);
  } else {
    growth_tracker_ += 1;
    if (growth_tracker_ == growth_interval_) {
      growth_tracker_ = 0;
      hysteresis_tracker_ = hysteresis_;
      scale_ = scale_ * growth_factor_;
    }
  }
}

nlohmann::json DynamicGradScaler::state_dict() const {
  return {{"scale", scale_},
          {"growth_tracker", growth_tracker_},
          {"hysteresis_tracker", hysteresis_tracker_}};
}

void DynamicGradScaler::load_state_dict(const nlohmann::json& sd) {
  for (const char* key : {"scale", "growth_tracker", "hysteresis_tracker"}) {
    MCORE_CHECK(sd.contains(key)) << "DynamicGradScaler::load_state_dict: no '" << key
                                  << "' in the saved grad scaler state " << sd.dump();
  }
  scale_ = sd.at("scale").get<float>();
  growth_tracker_ = sd.at("growth_tracker").get<int64_t>();
  hysteresis_tracker_ = sd.at("hysteresis_tracker").get<int64_t>();
}

}  // namespace mcore::optimizer
