// DDIM (Song et al. 2020), as diffusers 0.29.2 DDIMScheduler: deterministic with eta = 0,
// stochastic with eta > 0. Ref: diffusers schedulers/scheduling_ddim.py.
#pragma once

#include "schedulers/scheduler.h"

namespace vi::schedulers {

struct DDIMConfig {
  detail::BetaSchedule betas;
  bool clip_sample = true;
  double clip_sample_range = 1.0;
  bool set_alpha_to_one = true;
  int64_t steps_offset = 0;
  std::string prediction_type = "epsilon";  // epsilon | v_prediction | sample
  std::string timestep_spacing = "leading";  // linspace | leading | trailing
  double eta = 0.0;                          // a step() argument in diffusers; 0 in the pipelines

  // DDIMScheduler's constructor defaults for every key the file lacks.
  static DDIMConfig from_json(const core::JsonConfig& config);
};

class DDIMScheduler : public Scheduler {
 public:
  explicit DDIMScheduler(DDIMConfig config);

  std::string name() const override { return "ddim"; }
  void set_timesteps(int64_t num_inference_steps) override;
  bool is_stochastic() const override { return config_.eta > 0; }
  std::string prediction_type() const override { return config_.prediction_type; }
  at::Tensor step(const at::Tensor& model_output, int64_t timestep, const at::Tensor& sample,
                  at::Generator* generator = nullptr, const at::Tensor& noise = {}) override;
  SchedulerState state() const override;
  void load_state(const SchedulerState& state) override;

  const DDIMConfig& config() const { return config_; }

 private:
  DDIMConfig config_;
  float final_alpha_cumprod_ = 1.0f;
  int64_t num_inference_steps_ = 0;
  int64_t step_index_ = -1;  // informational: DDIM steps by timestep value
};

}  // namespace vi::schedulers
