// The one place where LibTorch 1.13 (Debian) and 2.x (pip, CUDA) differ for this project.
#pragma once

#include <torch/version.h>

// at::scaled_dot_product_attention (flash / memory-efficient kernels) exists from 2.0.
#if TORCH_VERSION_MAJOR >= 2
#define VI_HAS_SDPA 1
#else
#define VI_HAS_SDPA 0
#endif

// c10::InferenceMode exists in both; kept here so callers include one header for it.
#include <c10/core/InferenceMode.h>
