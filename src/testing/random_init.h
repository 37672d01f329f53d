// Random weights for test and benchmark models. EVERY parameter is drawn (diffusers
// zero-initialises some layers, e.g. each temporal conv layer's last conv, which would hide
// exactly the temporal bugs the tests are for), at a scale that keeps activations of order one.
#pragma once

#include <torch/nn/module.h>

#include <cstdint>

namespace vi::testing {

// Deterministic for a given seed and module structure:
//   weights with >= 2 dims: N(0, 1/fan_in) scaled so that each layer roughly preserves variance,
//   1-d "weight" (norm scales): 1 + 0.1 N(0,1),   biases: 0.1 N(0,1),   embeddings: N(0, 1).
// `out_scale` multiplies weights whose name matches a residual output projection
// (to_out / proj_out / conv2 / conv4 / fc2 / linear_2 / out_proj) to keep deep residual
// stacks from growing; 1.0 leaves them as drawn. Drawn where the parameters are (the first
// one's device): bit-for-bit reproducible on the CPU, reproducible per device type elsewhere.
void randomize_parameters(torch::nn::Module& module, uint64_t seed, double out_scale = 0.5);

}  // namespace vi::testing
