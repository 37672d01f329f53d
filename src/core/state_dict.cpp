#include "core/state_dict.h"

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>

#include <set>

#include "core/check.h"

namespace vi::core {

namespace {

bool matches(const std::string& name, const std::vector<std::string>& patterns) {
  for (const auto& p : patterns) {
    if (!p.empty() && p.back() == '*') {
      if (name.compare(0, p.size() - 1, p, 0, p.size() - 1) == 0) return true;
    } else if (name == p) {
      return true;
    }
  }
  return false;
}

}  // namespace

std::vector<std::pair<std::string, at::Tensor>> named_state(const torch::nn::Module& module) {
  std::vector<std::pair<std::string, at::Tensor>> out;
  for (const auto& item : module.named_parameters(/*recurse=*/true)) out.emplace_back(item.key(), item.value());
  for (const auto& item : module.named_buffers(/*recurse=*/true)) out.emplace_back(item.key(), item.value());
  return out;
}

void load_state_dict(torch::nn::Module& module, const WeightStore& store, const LoadOptions& options) {
  // NoGrad rather than InferenceMode: set_data on parameters must stay legal afterwards.
  at::NoGradGuard no_grad;
  std::vector<std::string> problems;
  std::set<std::string> used;
  auto state = named_state(module);

  for (auto& [name, target] : state) {
    const std::string key = options.prefix + name;
    const TensorInfo* info = store.find(key);
    if (info == nullptr) {
      if (options.strict && !matches(name, options.optional_names)) {
        problems.push_back(fmt::format("tensor '{}': missing (expected shape {})", key, shape_str(target.sizes().vec())));
      }
      continue;
    }
    used.insert(key);
    if (info->shape != target.sizes().vec()) {
      problems.push_back(
          fmt::format("tensor '{}': got {}, expected {}", key, shape_str(info->shape), shape_str(target.sizes().vec())));
      continue;
    }
    if (target.is_floating_point() != dtype_is_floating(info->dtype)) {
      problems.push_back(fmt::format("tensor '{}': dtype {}, expected a {} type", key, dtype_name(info->dtype),
                                     target.is_floating_point() ? "floating" : "non-floating"));
      continue;
    }
  }
  for (const auto& key : store.names()) {
    if (used.count(key)) continue;
    if (key.compare(0, options.prefix.size(), options.prefix) != 0) {
      if (options.strict) problems.push_back(fmt::format("tensor '{}': unexpected (outside prefix '{}')", key, options.prefix));
      continue;
    }
    const std::string name = key.substr(options.prefix.size());
    if (matches(name, options.ignored_names)) continue;
    if (options.strict) {
      problems.push_back(fmt::format("tensor '{}': unexpected (the model has no such parameter)", key));
    }
  }
  if (!problems.empty()) {
    std::string message = fmt::format("{}: {} problem{} loading weights:", store.origin(), problems.size(),
                                      problems.size() == 1 ? "" : "s");
    for (const auto& p : problems) message += "\n  " + p;
    VI_FAIL("{}", message);
  }

  // All checks passed: each tensor is copied once, straight into the run's dtype and device
  // (never aliasing the read-only mapping). Parameters are frozen: inference only.
  for (auto& [name, target] : named_state(module)) {
    const std::string key = options.prefix + name;
    const bool floating = target.is_floating_point();
    at::Tensor value = store.find(key) != nullptr ? store.get(key) : target;
    if (floating) {
      target.set_data(value.to(options.device, options.dtype, /*non_blocking=*/false, /*copy=*/true));
    } else {
      target.set_data(value.to(options.device, target.scalar_type(), false, true));
    }
  }
  for (auto& p : module.parameters(/*recurse=*/true)) p.set_requires_grad(false);
}

}  // namespace vi::core
