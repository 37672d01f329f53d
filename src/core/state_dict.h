// Loading a checkpoint into a torch::nn::Module by the module's own parameter names
// (which mirror the diffusers / transformers attribute names).
#pragma once

#include <ATen/Tensor.h>
#include <c10/core/Device.h>
#include <c10/core/ScalarType.h>
#include <torch/nn/module.h>

#include <string>
#include <vector>

#include "core/safetensors.h"

namespace vi::core {

struct LoadOptions {
  // Checkpoint names are prefix + module name ("text_model." for CLIP, "" for a UNet).
  std::string prefix;
  // Strict: every parameter/buffer present, no tensor of the checkpoint left over.
  bool strict = true;
  // Module names that may be absent from the checkpoint (kept as initialised).
  std::vector<std::string> optional_names;
  // Checkpoint names (without prefix, exact or ending in '*') that are silently ignored,
  // e.g. a non-persistent buffer some exporters wrote.
  std::vector<std::string> ignored_names;
  // Floating tensors are converted to this dtype and moved to this device.
  c10::ScalarType dtype = c10::kFloat;
  c10::Device device = c10::kCPU;
};

// Copies every parameter and buffer of `module` from `store`. All problems (missing, unexpected,
// wrong shape, non-floating dtype) are collected and thrown as ONE vi::Error listing each, e.g.
//   tensor 'down_blocks.0.temp_convs.0.conv1.2.weight': got [64, 32, 3, 1, 1], expected [64, 64, 3, 1, 1]
// Floating parameters are converted to options.dtype; the module is moved to options.device.
void load_state_dict(torch::nn::Module& module, const WeightStore& store, const LoadOptions& options = {});

// The module's parameters and buffers in checkpoint order: (name, tensor).
std::vector<std::pair<std::string, at::Tensor>> named_state(const torch::nn::Module& module);

}  // namespace vi::core
