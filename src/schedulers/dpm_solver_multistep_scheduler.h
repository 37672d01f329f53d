// DPM-Solver++ multistep (Lu et al. 2022), deterministic ("dpmsolver++") and SDE
// ("sde-dpmsolver++") variants, orders 1 and 2, midpoint solver, as diffusers 0.29.2
// DPMSolverMultistepScheduler. Ref: diffusers schedulers/scheduling_dpmsolver_multistep.py.
#pragma once

#include <limits>

#include "schedulers/scheduler.h"

namespace vi::schedulers {

struct DPMSolverMultistepConfig {
  detail::BetaSchedule betas;
  int64_t solver_order = 2;                    // 1 or 2
  std::string prediction_type = "epsilon";     // epsilon | v_prediction | sample
  std::string algorithm_type = "dpmsolver++";  // dpmsolver++ | sde-dpmsolver++
  std::string solver_type = "midpoint";
  bool lower_order_final = true;
  bool euler_at_final = false;
  bool use_karras_sigmas = false;
  std::string final_sigmas_type = "zero";  // zero | sigma_min
  double lambda_min_clipped = -std::numeric_limits<double>::infinity();
  std::string timestep_spacing = "linspace";  // linspace | leading | trailing
  int64_t steps_offset = 0;

  // DPMSolverMultistepScheduler's constructor defaults for every key the file lacks; keys of other
  // scheduler classes (a DDIM config's clip_sample, set_alpha_to_one, ...) are ignored.
  static DPMSolverMultistepConfig from_json(const core::JsonConfig& config);
};

class DPMSolverMultistepScheduler : public Scheduler {
 public:
  explicit DPMSolverMultistepScheduler(DPMSolverMultistepConfig config);

  std::string name() const override { return config_.algorithm_type; }
  void set_timesteps(int64_t num_inference_steps) override;
  bool is_stochastic() const override { return config_.algorithm_type == "sde-dpmsolver++"; }
  std::string prediction_type() const override { return config_.prediction_type; }
  at::Tensor step(const at::Tensor& model_output, int64_t timestep, const at::Tensor& sample,
                  at::Generator* generator = nullptr, const at::Tensor& noise = {}) override;
  SchedulerState state() const override;
  void load_state(const SchedulerState& state) override;
  std::vector<float> sigmas() const override { return sigmas_; }

  const DPMSolverMultistepConfig& config() const { return config_; }

 private:
  at::Tensor convert_model_output(const at::Tensor& model_output, const at::Tensor& sample) const;
  at::Tensor first_order_update(const at::Tensor& x0, const at::Tensor& sample, const at::Tensor& noise) const;
  at::Tensor second_order_update(const at::Tensor& sample, const at::Tensor& noise) const;
  int64_t index_for_timestep(int64_t timestep) const;

  DPMSolverMultistepConfig config_;
  std::vector<float> train_sigmas_;  // sqrt((1 - alphas_cumprod) / alphas_cumprod), fp32
  std::vector<float> sigmas_;        // inference sigmas, num_inference_steps + 1
  // State (diffusers: _step_index, lower_order_nums, model_outputs).
  int64_t num_inference_steps_ = 0;
  int64_t step_index_ = -1;
  int64_t lower_order_nums_ = 0;
  std::vector<at::Tensor> model_outputs_;  // solver_order entries, oldest first; undefined = none yet
};

}  // namespace vi::schedulers
