// The one attention kernel every attention of the project runs through (UNet spatial, cross and
// temporal attention, the dual-scope blocks, the VAE's mid-block attention).
#pragma once

#include <ATen/Tensor.h>

#include <cstdint>

namespace vi::models {

// The fused CUDA kernels (flash, memory-efficient) put the batch in a grid dimension of at most
// 65,535 blocks; a larger batch fails to launch (or falls back to the math path).
constexpr int64_t kMaxFusedBatch = 65535;

// softmax(q k^T * scale + bias) v through at::scaled_dot_product_attention: the fused flash /
// memory-efficient kernels on CUDA, the flash kernel on the CPU; neither builds the score matrix,
// and both keep the softmax in float32 for half-precision inputs.
//   q [N, H, Sq, d], k [N, H, Sk, d], v [N, H, Sk, dv]; 3-d [N, S, d] inputs run as one head.
//   bias: undefined, or broadcastable to [N, H, Sq, Sk] in q's dtype (-inf hides a key).
// Returns [N, H, Sq, dv] ([N, Sq, dv] for 3-d inputs). N goes in slices of at most max_batch
// (the CUDA grid limit above); slicing never changes a row's result.
at::Tensor dot_product_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, double scale,
                                 const at::Tensor& bias = at::Tensor(), int64_t max_batch = kMaxFusedBatch);

}  // namespace vi::models
