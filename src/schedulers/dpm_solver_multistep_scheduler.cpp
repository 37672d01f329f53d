#include "schedulers/dpm_solver_multistep_scheduler.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>

#include "core/check.h"

namespace vi::schedulers {

namespace {

// Ref: _sigma_to_alpha_sigma_t, in float as the reference's 0-dim float32 tensors.
struct AlphaSigma {
  float alpha, sigma, lambda;
};
AlphaSigma alpha_sigma(float sigma) {
  const float alpha = 1.0f / std::sqrt(sigma * sigma + 1.0f);
  const float s = sigma * alpha;
  return {alpha, s, std::log(alpha) - std::log(s)};
}

// Ref: EulerDiscreteScheduler._sigma_to_t: the fractional training timestep of `sigma`, by linear
// interpolation in log sigma between the two neighbouring training sigmas.
double sigma_to_t(double sigma, const std::vector<float>& log_sigmas) {
  const double log_sigma = std::log(std::max(sigma, 1e-10));
  const int64_t n = static_cast<int64_t>(log_sigmas.size());
  int64_t low = 0;  // the last index whose log sigma is <= log_sigma (0 when none)
  for (int64_t i = 0; i < n; ++i)
    if (log_sigma - double(log_sigmas[i]) >= 0) low = i;
  low = std::min(low, n - 2);
  const int64_t high = low + 1;
  const float lo = log_sigmas[low], hi = log_sigmas[high];
  double w = (double(lo) - log_sigma) / double(lo - hi);
  w = std::clamp(w, 0.0, 1.0);
  return (1 - w) * double(low) + w * double(high);
}

}  // namespace

DPMSolverMultistepConfig DPMSolverMultistepConfig::from_json(const core::JsonConfig& config) {
  DPMSolverMultistepConfig c;
  const std::string& origin = config.origin();
  c.betas = detail::read_beta_schedule(config);
  c.solver_order = config.get_or<int64_t>("solver_order", c.solver_order);
  c.prediction_type = detail::get_choice(config, "prediction_type", c.prediction_type, {"epsilon", "v_prediction", "sample"});
  c.algorithm_type = detail::get_choice(config, "algorithm_type", c.algorithm_type, {"dpmsolver++", "sde-dpmsolver++"});
  c.solver_type = detail::get_choice(config, "solver_type", c.solver_type, {"midpoint"});
  c.lower_order_final = config.get_or<bool>("lower_order_final", c.lower_order_final);
  c.euler_at_final = config.get_or<bool>("euler_at_final", c.euler_at_final);
  c.use_karras_sigmas = config.get_or<bool>("use_karras_sigmas", c.use_karras_sigmas);
  c.final_sigmas_type = detail::get_choice(config, "final_sigmas_type", c.final_sigmas_type, {"zero", "sigma_min"});
  c.lambda_min_clipped = config.get_or<double>("lambda_min_clipped", c.lambda_min_clipped);
  c.timestep_spacing = detail::get_choice(config, "timestep_spacing", c.timestep_spacing, {"linspace", "leading", "trailing"});
  c.steps_offset = config.get_or<int64_t>("steps_offset", c.steps_offset);
  VI_CHECK(!config.get_or<bool>("thresholding", false), "{}: thresholding is not supported", origin);
  VI_CHECK(!config.get_or<bool>("use_lu_lambdas", false), "{}: use_lu_lambdas is not supported", origin);
  VI_CHECK(!config.has("variance_type"), "{}: variance_type is not supported", origin);
  return c;
}

DPMSolverMultistepScheduler::DPMSolverMultistepScheduler(DPMSolverMultistepConfig config) : config_(std::move(config)) {
  const auto& c = config_;
  VI_CHECK(c.solver_order == 1 || c.solver_order == 2, "{}: solver_order {} is not supported (1 or 2)",
           c.algorithm_type, c.solver_order);
  VI_CHECK(c.algorithm_type == "dpmsolver++" || c.algorithm_type == "sde-dpmsolver++",
           "DPM-Solver: algorithm_type '{}' is not supported (dpmsolver++ or sde-dpmsolver++)", c.algorithm_type);
  VI_CHECK(c.solver_type == "midpoint", "{}: solver_type '{}' is not supported (midpoint)", c.algorithm_type,
           c.solver_type);
  VI_CHECK(c.final_sigmas_type == "zero" || c.final_sigmas_type == "sigma_min",
           "{}: final_sigmas_type '{}' is not one of zero, sigma_min", c.algorithm_type, c.final_sigmas_type);
  VI_CHECK(c.timestep_spacing == "linspace" || c.timestep_spacing == "leading" || c.timestep_spacing == "trailing",
           "{}: timestep_spacing '{}' is not one of linspace, leading, trailing", c.algorithm_type, c.timestep_spacing);
  VI_CHECK(c.prediction_type == "epsilon" || c.prediction_type == "v_prediction" || c.prediction_type == "sample",
           "{}: prediction_type '{}' is not one of epsilon, v_prediction, sample", c.algorithm_type, c.prediction_type);
  const at::Tensor ac = detail::alphas_cumprod(c.betas).contiguous();
  alphas_cumprod_.assign(ac.data_ptr<float>(), ac.data_ptr<float>() + ac.numel());
  const at::Tensor sig = at::pow((1 - ac) / ac, 0.5).contiguous();  // [num_train] float32
  train_sigmas_.assign(sig.data_ptr<float>(), sig.data_ptr<float>() + sig.numel());
  model_outputs_.assign(static_cast<size_t>(c.solver_order), at::Tensor());
}

void DPMSolverMultistepScheduler::set_timesteps(int64_t n) {
  const auto& c = config_;
  const int64_t num_train = c.betas.num_train_timesteps;
  VI_CHECK(n >= 1, "{}: number of steps must be >= 1, got {}", c.algorithm_type, n);
  // Clipping the minimum of lambda(t) (numerical stability of cosine schedules): the last usable
  // timestep. lambda_t is ascending once flipped; searchsorted (left) of the threshold.
  int64_t clipped_idx = 0;
  if (c.lambda_min_clipped > -std::numeric_limits<double>::infinity()) {
    const at::Tensor ac = at::tensor(alphas_cumprod_, at::TensorOptions().dtype(at::kFloat));
    const at::Tensor lambda_t = at::log(at::sqrt(ac)) - at::log(at::sqrt(1 - ac));
    clipped_idx = at::searchsorted(at::flip(lambda_t, {0}), at::Scalar(c.lambda_min_clipped)).item<int64_t>();
  }
  const int64_t last_timestep = num_train - clipped_idx;

  // Timesteps ("linspace", "leading", "trailing": Table 2 of arXiv 2305.08891).
  std::vector<int64_t> ts;
  if (c.timestep_spacing == "linspace") {
    const auto v = detail::np_linspace(0, double(last_timestep - 1), n + 1);
    for (int64_t i = n; i >= 1; --i) ts.push_back(static_cast<int64_t>(detail::np_round(v[i])));
  } else if (c.timestep_spacing == "leading") {
    const int64_t ratio = last_timestep / (n + 1);
    for (int64_t i = n; i >= 1; --i) ts.push_back(i * ratio + c.steps_offset);
  } else {  // trailing
    for (double v : detail::np_arange(double(last_timestep), 0.0, -double(num_train) / double(n)))
      ts.push_back(static_cast<int64_t>(detail::np_round(v)) - 1);
  }

  // Sigmas: the training sigmas at those timesteps (np.interp: clamped at the ends), or Karras'
  // schedule with timesteps mapped back from the sigmas; then the final sigma.
  std::vector<double> sig;
  if (c.use_karras_sigmas) {
    std::vector<float> log_sigmas(train_sigmas_.size());
    for (size_t i = 0; i < train_sigmas_.size(); ++i) log_sigmas[i] = std::log(train_sigmas_[i]);
    // Ref: _convert_to_karras (rho = 7) between the smallest and the largest training sigma.
    const double sigma_min = train_sigmas_.front(), sigma_max = train_sigmas_.back();
    const double rho = 7.0;
    const double min_inv_rho = std::pow(sigma_min, 1 / rho), max_inv_rho = std::pow(sigma_max, 1 / rho);
    const auto ramp = detail::np_linspace(0, 1, n);
    ts.clear();
    for (double r : ramp) {
      const double s = std::pow(max_inv_rho + r * (min_inv_rho - max_inv_rho), rho);
      sig.push_back(s);
      ts.push_back(static_cast<int64_t>(detail::np_round(sigma_to_t(s, log_sigmas))));
    }
  } else {
    for (int64_t t : ts) sig.push_back(train_sigmas_[std::clamp<int64_t>(t, 0, num_train - 1)]);
  }
  sig.push_back(c.final_sigmas_type == "sigma_min" ? train_sigmas_.front() : 0.0);
  sigmas_.assign(sig.begin(), sig.end());  // float64 -> float32, as .astype(np.float32)

  timesteps_ = std::move(ts);
  num_inference_steps_ = static_cast<int64_t>(timesteps_.size());
  model_outputs_.assign(static_cast<size_t>(c.solver_order), at::Tensor());
  lower_order_nums_ = 0;
  step_index_ = -1;
}

int64_t DPMSolverMultistepScheduler::index_for_timestep(int64_t timestep) const {
  // Ref: index_for_timestep: the first step starts at the second match when the value repeats
  // (so that image-to-image starts skip no sigma), at the last step when it is absent.
  std::vector<int64_t> matches;
  for (size_t i = 0; i < timesteps_.size(); ++i)
    if (timesteps_[i] == timestep) matches.push_back(static_cast<int64_t>(i));
  if (matches.empty()) return static_cast<int64_t>(timesteps_.size()) - 1;
  return matches.size() > 1 ? matches[1] : matches[0];
}

at::Tensor DPMSolverMultistepScheduler::convert_model_output(const at::Tensor& model_output,
                                                             const at::Tensor& sample) const {
  // DPM-Solver++ integrates the data prediction x0.
  if (config_.prediction_type == "sample") return model_output;
  const AlphaSigma a = alpha_sigma(sigmas_[step_index_]);
  if (config_.prediction_type == "epsilon") return (sample - model_output * a.sigma) / a.alpha;
  return sample * a.alpha - model_output * a.sigma;  // v_prediction
}

at::Tensor DPMSolverMultistepScheduler::first_order_update(const at::Tensor& x0, const at::Tensor& sample,
                                                           const at::Tensor& noise) const {
  // Ref: dpm_solver_first_order_update (equivalent to DDIM).
  const AlphaSigma t = alpha_sigma(sigmas_[step_index_ + 1]);
  const AlphaSigma s = alpha_sigma(sigmas_[step_index_]);
  const float h = t.lambda - s.lambda;
  if (config_.algorithm_type == "dpmsolver++") {
    return sample * (t.sigma / s.sigma) - x0 * (t.alpha * (std::exp(-h) - 1.0f));
  }
  return sample * (t.sigma / s.sigma * std::exp(-h)) + x0 * (t.alpha * (1.0f - std::exp(-2.0f * h))) +
         noise * (t.sigma * std::sqrt(1.0f - std::exp(-2.0f * h)));
}

at::Tensor DPMSolverMultistepScheduler::second_order_update(const at::Tensor& sample, const at::Tensor& noise) const {
  // Ref: multistep_dpm_solver_second_order_update, midpoint (arXiv 2211.01095).
  const AlphaSigma t = alpha_sigma(sigmas_[step_index_ + 1]);
  const AlphaSigma s0 = alpha_sigma(sigmas_[step_index_]);
  const AlphaSigma s1 = alpha_sigma(sigmas_[step_index_ - 1]);
  const at::Tensor& m0 = model_outputs_[model_outputs_.size() - 1];
  const at::Tensor& m1 = model_outputs_[model_outputs_.size() - 2];
  const float h = t.lambda - s0.lambda, h_0 = s0.lambda - s1.lambda;
  const float r0 = h_0 / h;
  const at::Tensor& d0 = m0;
  const at::Tensor d1 = (m0 - m1) * (1.0f / r0);
  if (config_.algorithm_type == "dpmsolver++") {
    const float c = t.alpha * (std::exp(-h) - 1.0f);
    return sample * (t.sigma / s0.sigma) - d0 * c - d1 * (0.5f * c);
  }
  const float c = t.alpha * (1.0f - std::exp(-2.0f * h));
  return sample * (t.sigma / s0.sigma * std::exp(-h)) + d0 * c + d1 * (0.5f * c) +
         noise * (t.sigma * std::sqrt(1.0f - std::exp(-2.0f * h)));
}

at::Tensor DPMSolverMultistepScheduler::step(const at::Tensor& model_output, int64_t timestep, const at::Tensor& sample,
                                             at::Generator* generator, const at::Tensor& noise) {
  VI_CHECK(num_inference_steps_ > 0, "{}: set_timesteps must be called before step", name());
  if (step_index_ < 0) step_index_ = index_for_timestep(timestep);
  VI_CHECK(step_index_ < num_inference_steps_, "{}: step {} past the end of the {}-step schedule", name(),
           step_index_, num_inference_steps_);
  const auto& c = config_;
  const int64_t n = num_inference_steps_;
  // Lower orders near the end improve stability for few steps; a zero final sigma always ends
  // first-order. (diffusers' lower_order_second only matters for solver order 3.)
  const bool lower_order_final = step_index_ == n - 1 && (c.euler_at_final || (c.lower_order_final && n < 15) ||
                                                          c.final_sigmas_type == "zero");

  const at::Tensor x0 = convert_model_output(model_output, sample);
  for (size_t i = 0; i + 1 < model_outputs_.size(); ++i) model_outputs_[i] = model_outputs_[i + 1];
  model_outputs_.back() = x0;

  const at::Tensor sample32 = sample.to(at::kFloat);
  at::Tensor eps_noise;
  if (is_stochastic()) eps_noise = draw_noise(model_output, at::kFloat, generator, noise);

  at::Tensor prev;
  if (c.solver_order == 1 || lower_order_nums_ < 1 || lower_order_final) {
    prev = first_order_update(x0, sample32, eps_noise);
  } else {
    prev = second_order_update(sample32, eps_noise);
  }
  if (lower_order_nums_ < c.solver_order) ++lower_order_nums_;
  ++step_index_;
  return prev.to(model_output.scalar_type());
}

SchedulerState DPMSolverMultistepScheduler::state() const {
  SchedulerState s;
  s.num_inference_steps = num_inference_steps_;
  s.step_index = step_index_;
  s.lower_order_nums = lower_order_nums_;
  s.model_outputs = model_outputs_;
  return s;
}

void DPMSolverMultistepScheduler::load_state(const SchedulerState& s) {
  VI_CHECK(static_cast<int64_t>(s.model_outputs.size()) == config_.solver_order,
           "{}: state has {} model outputs, solver order is {}", name(), s.model_outputs.size(), config_.solver_order);
  VI_CHECK(s.lower_order_nums >= 0 && s.lower_order_nums <= config_.solver_order, "{}: lower_order_nums {} invalid",
           name(), s.lower_order_nums);
  if (s.num_inference_steps > 0) set_timesteps(s.num_inference_steps);
  VI_CHECK(s.step_index >= -1 && s.step_index <= num_inference_steps_, "{}: step index {} outside the schedule",
           name(), s.step_index);
  step_index_ = s.step_index;
  lower_order_nums_ = s.lower_order_nums;
  model_outputs_ = s.model_outputs;
}

}  // namespace vi::schedulers
