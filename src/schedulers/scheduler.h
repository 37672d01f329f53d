// Diffusion schedulers: a small common interface, configured from a diffusers scheduler_config.json,
// numerically the same as diffusers 0.29.2 in fp32 (coefficients computed in float in the
// reference's order, tensors updated with the same operations).
//
// Usage (make_scheduler: schedulers/registry.h), as a pipeline's denoising loop does:
//   auto sched = make_scheduler("sde-dpmsolver++", JsonConfig::load(".../scheduler_config.json"));
//   sched->set_timesteps(30);
//   latents = noise * sched->init_noise_sigma();
//   for (int64_t t : sched->timesteps()) {
//     eps = unet(sched->scale_model_input(latents, t), t, ...);
//     latents = sched->step(eps, t, latents, &generator);
//   }
// A scheduler's whole mutable state is state() / load_state() (checkpoint and resume).
#pragma once

#include <ATen/core/Generator.h>
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/json_config.h"

namespace vi::schedulers {

// Everything a scheduler changes while sampling. Tensors in model_outputs may be undefined
// (diffusers' None: no history yet).
struct SchedulerState {
  int64_t num_inference_steps = 0;  // 0 until set_timesteps
  int64_t step_index = -1;          // -1 until the first step
  int64_t lower_order_nums = 0;     // multistep: how many previous outputs are usable
  std::vector<at::Tensor> model_outputs;  // multistep history, oldest first (solver_order entries)
};

// A scheduler's state as a checkpoint stores it, opaque to everything but the scheduler that
// wrote it. Every tensor holds one row per sample (dim 0 runs over the samples that step() was
// given), so a caller may split it by rows (one clip's frames) and concatenate rows back.
struct SchedulerRecord {
  std::string scheduler;                      // name() of the writer; restore() refuses another's
  std::map<std::string, int64_t> counters;
  std::map<std::string, at::Tensor> tensors;  // an absent name is an undefined tensor
};

class Scheduler {
 public:
  virtual ~Scheduler() = default;

  // "ddim", "dpmsolver++" or "sde-dpmsolver++".
  virtual std::string name() const = 0;
  // Builds the timestep schedule for `num_inference_steps` steps and resets the state.
  virtual void set_timesteps(int64_t num_inference_steps) = 0;
  // The timesteps of the schedule, first (noisiest) to last.
  const std::vector<int64_t>& timesteps() const { return timesteps_; }
  // Scale of the initial Gaussian noise (1 for both samplers here).
  virtual double init_noise_sigma() const { return 1.0; }
  // Input scaling before the model call (the identity for DDIM and DPM-Solver).
  virtual at::Tensor scale_model_input(const at::Tensor& sample, int64_t timestep) const { return sample; }
  // True when step() adds fresh Gaussian noise (sde-dpmsolver++, DDIM with eta > 0).
  virtual bool is_stochastic() const = 0;
  // What the model predicts: "epsilon", "v_prediction" or "sample" (scheduler_config.json).
  virtual std::string prediction_type() const = 0;

  // The model's estimate of the clean sample x0 from its output at `timestep` for `sample`, with
  // the training schedule's alpha_prod_t (Ref: DDIMScheduler.step, "predicted x_0", without the
  // clipping): what a live preview shows. Does not change the state. DPM-Solver with Karras
  // sigmas steps at the sigma the (rounded) timestep came from, so its own x0 differs slightly.
  at::Tensor predicted_original_sample(const at::Tensor& model_output, int64_t timestep, const at::Tensor& sample) const;

  // One denoising step from `sample` at `timestep` to the previous (less noisy) sample.
  // Stochastic samplers take `noise` when it is defined (shape of model_output), otherwise draw
  // it like diffusers' randn_tensor: randn(model_output.shape, generator) on the generator's
  // device (the default CPU generator when null), moved to the output's device.
  virtual at::Tensor step(const at::Tensor& model_output, int64_t timestep, const at::Tensor& sample,
                          at::Generator* generator = nullptr, const at::Tensor& noise = {}) = 0;

  virtual SchedulerState state() const = 0;
  virtual void load_state(const SchedulerState& state) = 0;
  // The same state as a named record (checkpoints); restore() throws naming a missing or
  // foreign entry. The default maps SchedulerState; a scheduler with other state overrides both.
  virtual SchedulerRecord record() const;
  virtual void restore(const SchedulerRecord& record);

  // The training noise schedule (fp32, num_train_timesteps entries) and, where the sampler has
  // them, the inference sigmas (num_inference_steps + 1 entries, the last one the final sigma).
  const std::vector<float>& alphas_cumprod() const { return alphas_cumprod_; }
  virtual std::vector<float> sigmas() const { return {}; }

 protected:
  at::Tensor draw_noise(const at::Tensor& like, at::ScalarType dtype, at::Generator* generator,
                        const at::Tensor& noise) const;

  std::vector<int64_t> timesteps_;
  std::vector<float> alphas_cumprod_;
};

// Settings given on the command line that replace (or fill in) scheduler_config.json values, as
// keyword arguments of diffusers' from_config do.
struct SchedulerOverrides {
  std::optional<std::string> timestep_spacing;   // "linspace" | "leading" | "trailing"
  std::optional<int64_t> steps_offset;
  std::optional<bool> use_karras_sigmas;         // DPM-Solver
  std::optional<int64_t> solver_order;           // DPM-Solver: 1 or 2
  std::optional<bool> lower_order_final;         // DPM-Solver
  std::optional<bool> euler_at_final;            // DPM-Solver
  std::optional<std::string> final_sigmas_type;  // DPM-Solver: "zero" | "sigma_min"
  std::optional<double> eta;                     // DDIM: 0 deterministic, > 0 stochastic
};

// The reference's effective sampler: DPMSolverMultistepScheduler.from_config(<the model's DDIM
// config>, algorithm_type="sde-dpmsolver++") (ALGORITHM.md §5); the registry's first entry.
inline constexpr const char* kDefaultScheduler = "sde-dpmsolver++";

// The scheduler `name` ("ddim", "dpmsolver++", "sde-dpmsolver++": Scheduler::name(); empty: the
// class scheduler_config.json names) built from `config` (any diffusers scheduler config: keys
// the target class does not know are ignored, keys it knows but the file lacks take the target
// class's defaults, like diffusers' from_config), then the overrides. Unsupported settings
// (thresholding, v-prediction with DDIM clipping, solver order 3, ...) are refused with an
// error naming the key. The schedulers there are: schedulers/registry.h.
std::unique_ptr<Scheduler> make_scheduler(const std::string& name, const core::JsonConfig& config,
                                          const SchedulerOverrides& overrides = {});

// Names accepted by make_scheduler, in the registry's order.
std::vector<std::string> scheduler_names();

namespace detail {

// Shared noise schedule (Ref: diffusers scheduling_ddim.py / scheduling_dpmsolver_multistep.py
// __init__): betas from beta_schedule, alphas_cumprod = cumprod(1 - betas), all fp32 on the CPU.
struct BetaSchedule {
  int64_t num_train_timesteps = 1000;
  double beta_start = 0.0001;
  double beta_end = 0.02;
  std::string beta_schedule = "linear";
  std::vector<double> trained_betas;  // overrides the schedule when not empty
};
BetaSchedule read_beta_schedule(const core::JsonConfig& config);
at::Tensor alphas_cumprod(const BetaSchedule& schedule);  // [num_train_timesteps] float32

// numpy.linspace(start, stop, num) in float64 (endpoint included).
std::vector<double> np_linspace(double start, double stop, int64_t num);
// numpy.arange(start, stop, step) in float64 (as numpy fills it: start + i * (second - first)).
std::vector<double> np_arange(double start, double stop, double step);
// numpy.round: half to even.
double np_round(double x);

// Config reading helpers: the value, validated against the allowed choices.
std::string get_choice(const core::JsonConfig& config, const std::string& key, const std::string& fallback,
                       const std::vector<std::string>& choices);

}  // namespace detail

}  // namespace vi::schedulers
