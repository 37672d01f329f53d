#include "testing/random_init.h"

#include <ATen/ATen.h>
#include <ATen/Context.h>
#include <ATen/core/Generator.h>
#include <ATen/CPUGeneratorImpl.h>
#include <c10/core/InferenceMode.h>

#include <cmath>
#include <mutex>
#include <string>

namespace vi::testing {

namespace {

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

bool is_output_projection(const std::string& name) {
  for (const char* key : {"to_out", "proj_out", "conv2", "conv4", "fc2", "linear_2", "out_proj", ".ff.net.2"}) {
    if (name.find(key) != std::string::npos) return true;
  }
  return false;
}

}  // namespace

void randomize_parameters(torch::nn::Module& module, uint64_t seed, double out_scale) {
  c10::InferenceMode guard;
  auto params = module.named_parameters(/*recurse=*/true);
  const c10::Device device = params.is_empty() ? c10::Device(c10::kCPU) : params[0].value().device();
  // On the CPU a generator of our own; elsewhere the device's default generator, reseeded: one
  // draw per parameter on the device, seconds instead of minutes for 1.4 B parameters.
  at::Generator gen = device.is_cpu() ? at::make_generator<at::CPUGeneratorImpl>(seed)
                                      : at::globalContext().defaultGenerator(device);
  if (!device.is_cpu()) {
    std::lock_guard<std::mutex> lock(gen.mutex());
    gen.set_current_seed(seed);
  }
  for (auto& item : params) {
    const std::string& name = item.key();
    at::Tensor p = item.value();
    at::Tensor draw = at::empty(p.sizes(), p.options().dtype(at::kFloat));
    draw.normal_(0.0, 1.0, gen);
    if (p.dim() >= 2) {
      bool embedding = name.find("embedding") != std::string::npos && name.find("linear") == std::string::npos &&
                       p.dim() == 2 && name.find("fps_embedding") == std::string::npos &&
                       name.find("time_embedding") == std::string::npos;
      int64_t fan_in = p.numel() / p.size(0);
      double scale = embedding ? 1.0 : 1.0 / std::sqrt(static_cast<double>(fan_in));
      if (!embedding && is_output_projection(name)) scale *= out_scale;
      draw.mul_(scale);
    } else if (ends_with(name, "weight")) {
      draw.mul_(0.1).add_(1.0);
    } else {
      draw.mul_(0.1);
    }
    p.copy_(draw);
  }
}

}  // namespace vi::testing
