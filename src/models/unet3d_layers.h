// The UNet3D's own layers: timestep embeddings and the temporal conv layer (its 2D blocks are in
// models/blocks_2d.h). Children carry the diffusers attribute names.
#pragma once

#include <ATen/Tensor.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/pimpl.h>

#include <array>
#include <cstdint>

#include "models/nn.h"
#include "models/temporal_context.h"

namespace vi::models {

// Sinusoidal embedding of (possibly fractional) timesteps t [N] -> float32 [N, dim].
// Ref: diffusers embeddings.py get_timestep_embedding (max_period 10000, scale 1).
at::Tensor timestep_embedding(const at::Tensor& t, int64_t dim, bool flip_sin_to_cos, double downscale_freq_shift);

// Ref: diffusers embeddings.py TimestepEmbedding (act silu, no cond_proj, no post_act).
class TimestepEmbeddingImpl : public torch::nn::Module {
 public:
  TimestepEmbeddingImpl(int64_t in_channels, int64_t time_embed_dim);
  at::Tensor forward(const at::Tensor& x) const;  // [N, in] -> [N, time_embed_dim]

 private:
  Linear linear_1_{nullptr}, linear_2_{nullptr};
};
TORCH_MODULE(TimestepEmbedding);

// Ref: diffusers resnet.py TemporalConvLayer: identity + conv4(conv3(conv2(conv1(x)))), each
// conv_i = GroupNorm -> SiLU [-> Dropout] -> Conv3d (3,1,1) over [B, C, F, h, w]. The four convs
// run through ctx.temporal_conv and their GroupNorms through ctx.group_norm.
class TemporalConvLayerImpl : public torch::nn::Module {
 public:
  TemporalConvLayerImpl(int64_t channels, int64_t groups);
  // x [B*F, C, h, w] -> [B*F, C, h, w]
  at::Tensor forward(const at::Tensor& x, int64_t num_frames, TemporalContext& ctx) const;

 private:
  at::Tensor convs(const at::Tensor& x, TemporalContext& ctx) const;  // [B, C, F', h, w]

  std::array<GroupNorm, 4> norms_{GroupNorm(nullptr), GroupNorm(nullptr), GroupNorm(nullptr), GroupNorm(nullptr)};
  std::array<Conv3d, 4> convs_{Conv3d(nullptr), Conv3d(nullptr), Conv3d(nullptr), Conv3d(nullptr)};
};
TORCH_MODULE(TemporalConvLayer);

}  // namespace vi::models
