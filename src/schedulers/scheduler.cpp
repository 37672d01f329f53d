#include "schedulers/scheduler.h"

#include <ATen/ATen.h>
#include <fmt/format.h>

#include <cmath>

#include "core/check.h"
#include "core/safetensors_format.h"

namespace vi::schedulers {

at::Tensor Scheduler::draw_noise(const at::Tensor& like, at::ScalarType dtype, at::Generator* generator,
                                 const at::Tensor& noise) const {
  if (noise.defined()) {
    VI_CHECK(noise.sizes() == like.sizes(), "{} step: noise of shape {} for a model output of shape {}", name(),
             core::shape_str(noise.sizes().vec()), core::shape_str(like.sizes().vec()));
    return noise.to(like.device(), dtype);
  }
  // Ref: diffusers utils/torch_utils.py randn_tensor: drawn on the generator's device (without
  // one, on the output's device with its default generator), then moved.
  c10::optional<at::Generator> gen;
  at::Device device = like.device();
  if (generator != nullptr) {
    gen = *generator;
    device = generator->device();
  }
  return at::randn(like.sizes(), gen, at::TensorOptions().dtype(dtype).device(device)).to(like.device());
}

at::Tensor Scheduler::predicted_original_sample(const at::Tensor& model_output, int64_t timestep,
                                                const at::Tensor& sample) const {
  VI_CHECK(timestep >= 0 && timestep < static_cast<int64_t>(alphas_cumprod_.size()), "{}: timestep {} outside [0, {})",
           name(), timestep, alphas_cumprod_.size());
  // Scalars in float and the tensor operations in DDIM's order, so that the two agree exactly.
  const float alpha_prod_t = alphas_cumprod_[static_cast<size_t>(timestep)];
  const float sqrt_alpha = std::sqrt(alpha_prod_t), sqrt_beta = std::sqrt(1.0f - alpha_prod_t);
  const std::string type = prediction_type();
  if (type == "epsilon") return (sample - model_output * sqrt_beta) / sqrt_alpha;
  if (type == "sample") return model_output;
  VI_CHECK(type == "v_prediction", "{}: prediction_type '{}'", name(), type);
  return sample * sqrt_alpha - model_output * sqrt_beta;
}

SchedulerRecord Scheduler::record() const {
  const SchedulerState s = state();
  SchedulerRecord r;
  r.scheduler = name();
  r.counters = {{"num_inference_steps", s.num_inference_steps},
                {"step_index", s.step_index},
                {"lower_order_nums", s.lower_order_nums},
                {"model_outputs", static_cast<int64_t>(s.model_outputs.size())}};
  for (size_t i = 0; i < s.model_outputs.size(); ++i) {
    if (s.model_outputs[i].defined()) r.tensors[fmt::format("model_output_{}", i)] = s.model_outputs[i];
  }
  return r;
}

void Scheduler::restore(const SchedulerRecord& r) {
  VI_CHECK(r.scheduler == name(), "scheduler state of '{}' given to {}", r.scheduler, name());
  auto counter = [&](const char* key) {
    auto it = r.counters.find(key);
    VI_CHECK(it != r.counters.end(), "{} state: counter '{}' is missing", name(), key);
    return it->second;
  };
  SchedulerState s;
  s.num_inference_steps = counter("num_inference_steps");
  s.step_index = counter("step_index");
  s.lower_order_nums = counter("lower_order_nums");
  const int64_t outputs = counter("model_outputs");
  VI_CHECK(outputs >= 0 && outputs <= 16, "{} state: {} model outputs", name(), outputs);
  size_t used = 0;
  for (int64_t i = 0; i < outputs; ++i) {
    auto it = r.tensors.find(fmt::format("model_output_{}", i));
    s.model_outputs.push_back(it == r.tensors.end() ? at::Tensor() : it->second);
    used += it == r.tensors.end() ? 0 : 1;
  }
  VI_CHECK(used == r.tensors.size(), "{} state: {} tensors, {} expected", name(), r.tensors.size(), used);
  load_state(s);
}

namespace detail {

BetaSchedule read_beta_schedule(const core::JsonConfig& config) {
  BetaSchedule s;
  s.num_train_timesteps = config.get_or<int64_t>("num_train_timesteps", s.num_train_timesteps);
  VI_CHECK(s.num_train_timesteps >= 2, "{}: num_train_timesteps must be >= 2, got {}", config.origin(),
           s.num_train_timesteps);
  s.beta_start = config.get_or<double>("beta_start", s.beta_start);
  s.beta_end = config.get_or<double>("beta_end", s.beta_end);
  s.beta_schedule = get_choice(config, "beta_schedule", s.beta_schedule, {"linear", "scaled_linear", "squaredcos_cap_v2"});
  if (config.has("trained_betas")) {
    s.trained_betas = config.get<std::vector<double>>("trained_betas");
    VI_CHECK(static_cast<int64_t>(s.trained_betas.size()) == s.num_train_timesteps,
             "{}: trained_betas has {} values, num_train_timesteps is {}", config.origin(), s.trained_betas.size(),
             s.num_train_timesteps);
  }
  VI_CHECK(!config.get_or<bool>("rescale_betas_zero_snr", false), "{}: rescale_betas_zero_snr is not supported",
           config.origin());
  return s;
}

at::Tensor alphas_cumprod(const BetaSchedule& s) {
  const auto f32 = at::TensorOptions().dtype(at::kFloat);
  at::Tensor betas;
  if (!s.trained_betas.empty()) {
    betas = at::tensor(s.trained_betas, at::TensorOptions().dtype(at::kDouble)).to(at::kFloat);
  } else if (s.beta_schedule == "linear") {
    betas = at::linspace(s.beta_start, s.beta_end, s.num_train_timesteps, f32);
  } else if (s.beta_schedule == "scaled_linear") {
    // Ref: "this schedule is very specific to the latent diffusion model": linear in sqrt(beta).
    betas = at::pow(at::linspace(std::sqrt(s.beta_start), std::sqrt(s.beta_end), s.num_train_timesteps, f32), 2);
  } else {
    // Ref: betas_for_alpha_bar (Glide cosine), computed in Python floats, stored as float32.
    std::vector<double> b(static_cast<size_t>(s.num_train_timesteps));
    constexpr double kPi = 3.141592653589793;  // Python's math.pi
    auto alpha_bar = [](double t) { return std::pow(std::cos((t + 0.008) / 1.008 * kPi / 2), 2); };
    for (int64_t i = 0; i < s.num_train_timesteps; ++i) {
      const double t1 = double(i) / s.num_train_timesteps, t2 = double(i + 1) / s.num_train_timesteps;
      b[i] = std::min(1 - alpha_bar(t2) / alpha_bar(t1), 0.999);
    }
    betas = at::tensor(b, at::TensorOptions().dtype(at::kDouble)).to(at::kFloat);
  }
  return at::cumprod(1.0 - betas, 0);  // [num_train_timesteps] float32
}

std::vector<double> np_linspace(double start, double stop, int64_t num) {
  std::vector<double> out(static_cast<size_t>(std::max<int64_t>(num, 0)));
  if (num == 1) out[0] = start;
  if (num < 2) return out;
  const double step = (stop - start) / double(num - 1);
  for (int64_t i = 0; i < num; ++i) out[i] = double(i) * step + start;
  out[num - 1] = stop;
  return out;
}

std::vector<double> np_arange(double start, double stop, double step) {
  const double len = std::ceil((stop - start) / step);
  std::vector<double> out;
  if (!(len > 0)) return out;
  out.resize(static_cast<size_t>(len));
  out[0] = start;
  if (out.size() > 1) {
    const double delta = (start + step) - start;
    for (size_t i = 1; i < out.size(); ++i) out[i] = start + double(i) * delta;
  }
  return out;
}

double np_round(double x) { return std::nearbyint(x); }  // default rounding mode: half to even

std::string get_choice(const core::JsonConfig& config, const std::string& key, const std::string& fallback,
                       const std::vector<std::string>& choices) {
  const std::string value = config.get_or<std::string>(key, fallback);
  for (const auto& c : choices)
    if (c == value) return value;
  std::string list;
  for (const auto& c : choices) list += (list.empty() ? "" : ", ") + c;
  VI_FAIL("{}: {} '{}' is not supported (choose one of: {})", config.origin(), key, value, list);
}

}  // namespace detail

}  // namespace vi::schedulers
