// Random-weight UNet3D models for tests and benchmarks, written in the exact diffusers layout
// (config.json + diffusion_pytorch_model.safetensors), every parameter random.
#pragma once

#include <c10/core/ScalarType.h>

#include <cstdint>
#include <string>
#include <vector>

#include "models/unet3d_condition.h"

namespace vi::testing {

// "tiny": the reference tiny model's config (block_out_channels [32, 64], 1 layer, 8 groups,
//   attention_head_dim 8, cross_attention_dim 32); "small": 3 levels [64, 128, 128], 2 layers,
//   head dim 32, cross_attention_dim 64, 32 groups; "videocrafter2": the real config (1.413 B
//   parameters). Anything else is an error listing these.
models::UNet3DConfig unet_preset(const std::string& preset);
std::vector<std::string> unet_preset_names();

// A model of `preset` with randomize_parameters(seed) weights, in `dtype` on `device`: the
// weights are drawn there (a GPU draws videocrafter2's 1.4 B parameters in parallel; the CPU
// generator draws one value at a time). CPU draws are what the tests' expectations were made with.
models::UNet3DConditionModel make_random_unet(const std::string& preset, uint64_t seed,
                                              c10::Device device = c10::kCPU, c10::ScalarType dtype = c10::kFloat);

// Writes dir/config.json and dir/diffusion_pytorch_model.safetensors (tensors in `dtype`);
// creates dir when missing.
void write_test_unet(const std::string& dir, const std::string& preset, uint64_t seed,
                     c10::ScalarType dtype = c10::kFloat);

}  // namespace vi::testing
