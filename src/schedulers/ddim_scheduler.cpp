#include "schedulers/ddim_scheduler.h"

#include <ATen/ATen.h>

#include <cmath>

#include "core/check.h"

namespace vi::schedulers {

DDIMConfig DDIMConfig::from_json(const core::JsonConfig& config) {
  DDIMConfig c;
  c.betas = detail::read_beta_schedule(config);
  c.clip_sample = config.get_or<bool>("clip_sample", c.clip_sample);
  c.clip_sample_range = config.get_or<double>("clip_sample_range", c.clip_sample_range);
  c.set_alpha_to_one = config.get_or<bool>("set_alpha_to_one", c.set_alpha_to_one);
  c.steps_offset = config.get_or<int64_t>("steps_offset", c.steps_offset);
  c.prediction_type = detail::get_choice(config, "prediction_type", c.prediction_type, {"epsilon", "v_prediction", "sample"});
  c.timestep_spacing = detail::get_choice(config, "timestep_spacing", c.timestep_spacing, {"linspace", "leading", "trailing"});
  VI_CHECK(!config.get_or<bool>("thresholding", false), "{}: thresholding is not supported", config.origin());
  return c;
}

DDIMScheduler::DDIMScheduler(DDIMConfig config) : config_(std::move(config)) {
  VI_CHECK(config_.timestep_spacing == "linspace" || config_.timestep_spacing == "leading" ||
               config_.timestep_spacing == "trailing",
           "ddim: timestep_spacing '{}' is not one of linspace, leading, trailing", config_.timestep_spacing);
  VI_CHECK(config_.eta >= 0 && std::isfinite(config_.eta), "ddim: eta must be >= 0, got {}", config_.eta);
  const at::Tensor ac = detail::alphas_cumprod(config_.betas).contiguous();
  alphas_cumprod_.assign(ac.data_ptr<float>(), ac.data_ptr<float>() + ac.numel());
  // Ref: "set_alpha_to_one decides whether we set this parameter simply to one or whether we use
  // the final alpha of the non-previous one".
  final_alpha_cumprod_ = config_.set_alpha_to_one ? 1.0f : alphas_cumprod_.front();
}

void DDIMScheduler::set_timesteps(int64_t n) {
  const int64_t num_train = config_.betas.num_train_timesteps;
  VI_CHECK(n >= 1 && n <= num_train, "ddim: number of steps {} must be in [1, num_train_timesteps = {}]", n, num_train);
  std::vector<int64_t> ts;
  if (config_.timestep_spacing == "linspace") {
    const auto v = detail::np_linspace(0, double(num_train - 1), n);
    for (auto it = v.rbegin(); it != v.rend(); ++it) ts.push_back(static_cast<int64_t>(detail::np_round(*it)));
  } else if (config_.timestep_spacing == "leading") {
    const int64_t ratio = num_train / n;
    for (int64_t i = n - 1; i >= 0; --i) ts.push_back(i * ratio + config_.steps_offset);
  } else {  // trailing
    for (double v : detail::np_arange(double(num_train), 0.0, -double(num_train) / double(n)))
      ts.push_back(static_cast<int64_t>(detail::np_round(v)) - 1);
  }
  for (int64_t t : ts) {
    VI_CHECK(t >= 0 && t < num_train, "ddim: timestep {} of the {} spacing (steps_offset {}) is outside [0, {})", t,
             config_.timestep_spacing, config_.steps_offset, num_train);
  }
  timesteps_ = std::move(ts);
  num_inference_steps_ = n;
  step_index_ = -1;
}

at::Tensor DDIMScheduler::step(const at::Tensor& model_output, int64_t timestep, const at::Tensor& sample,
                               at::Generator* generator, const at::Tensor& noise) {
  VI_CHECK(num_inference_steps_ > 0, "ddim: set_timesteps must be called before step");
  const int64_t num_train = config_.betas.num_train_timesteps;
  VI_CHECK(timestep >= 0 && timestep < num_train, "ddim: timestep {} outside [0, {})", timestep, num_train);
  // Scalars in float, in the reference's order (it computes them as 0-dim float32 tensors).
  // 1. previous timestep
  const int64_t prev_timestep = timestep - num_train / num_inference_steps_;
  // 2. alphas, betas
  const float alpha_prod_t = alphas_cumprod_[timestep];
  const float alpha_prod_t_prev = prev_timestep >= 0 ? alphas_cumprod_[prev_timestep] : final_alpha_cumprod_;
  const float beta_prod_t = 1.0f - alpha_prod_t;
  const float sqrt_alpha = std::sqrt(alpha_prod_t), sqrt_beta = std::sqrt(beta_prod_t);
  // 3. predicted x_0 and epsilon
  at::Tensor pred_original_sample, pred_epsilon;
  if (config_.prediction_type == "epsilon") {
    pred_original_sample = (sample - model_output * sqrt_beta) / sqrt_alpha;
    pred_epsilon = model_output;
  } else if (config_.prediction_type == "sample") {
    pred_original_sample = model_output;
    pred_epsilon = (sample - pred_original_sample * sqrt_alpha) / sqrt_beta;
  } else {  // v_prediction
    pred_original_sample = sample * sqrt_alpha - model_output * sqrt_beta;
    pred_epsilon = model_output * sqrt_alpha + sample * sqrt_beta;
  }
  // 4. clip x_0
  if (config_.clip_sample) {
    pred_original_sample = pred_original_sample.clamp(-config_.clip_sample_range, config_.clip_sample_range);
  }
  // 5. variance sigma_t(eta), formula (16)
  const float beta_prod_t_prev = 1.0f - alpha_prod_t_prev;
  const float variance = (beta_prod_t_prev / beta_prod_t) * (1.0f - alpha_prod_t / alpha_prod_t_prev);
  const float std_dev_t = static_cast<float>(config_.eta) * std::sqrt(variance);
  // 6. direction pointing to x_t, 7. x_{t-1} without noise, formula (12)
  const float direction = std::sqrt(1.0f - alpha_prod_t_prev - std_dev_t * std_dev_t);
  at::Tensor prev_sample = pred_original_sample * std::sqrt(alpha_prod_t_prev) + pred_epsilon * direction;
  if (config_.eta > 0) {
    prev_sample = prev_sample + draw_noise(model_output, model_output.scalar_type(), generator, noise) * std_dev_t;
  }
  step_index_ = step_index_ < 0 ? 1 : step_index_ + 1;
  return prev_sample;
}

SchedulerState DDIMScheduler::state() const {
  SchedulerState s;
  s.num_inference_steps = num_inference_steps_;
  s.step_index = step_index_;
  return s;
}

void DDIMScheduler::load_state(const SchedulerState& s) {
  VI_CHECK(s.model_outputs.empty() && s.lower_order_nums == 0, "ddim: state has multistep history");
  if (s.num_inference_steps > 0) set_timesteps(s.num_inference_steps);
  VI_CHECK(s.step_index >= -1 && s.step_index <= s.num_inference_steps, "ddim: step index {} outside the schedule",
           s.step_index);
  step_index_ = s.step_index;
}

}  // namespace vi::schedulers
