// The convolutional layers of the UNet3D: timestep embeddings, ResnetBlock2D, Down/Upsample2D
// and the temporal conv layer. Children carry the diffusers attribute names.
#pragma once

#include <ATen/Tensor.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/pimpl.h>

#include <array>
#include <cstdint>
#include <optional>
#include <vector>

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

// Ref: diffusers resnet.py ResnetBlock2D (time_embedding_norm "default", pre-norm, silu).
class ResnetBlock2DImpl : public torch::nn::Module {
 public:
  ResnetBlock2DImpl(int64_t in_channels, int64_t out_channels, int64_t temb_channels, int64_t groups, double eps,
                    double output_scale_factor);
  // x [N, Cin, h, w], temb [N, T] -> [N, Cout, h, w]
  at::Tensor forward(const at::Tensor& x, const at::Tensor& temb) const;

 private:
  GroupNorm norm1_{nullptr}, norm2_{nullptr};
  Conv2d conv1_{nullptr}, conv2_{nullptr}, conv_shortcut_{nullptr};
  Linear time_emb_proj_{nullptr};
  double output_scale_factor_;
};
TORCH_MODULE(ResnetBlock2D);

// Ref: diffusers resnet.py Downsample2D(use_conv=True, name="op"): 3x3 conv, stride 2.
class Downsample2DImpl : public torch::nn::Module {
 public:
  Downsample2DImpl(int64_t channels, int64_t padding);
  at::Tensor forward(const at::Tensor& x) const;  // [N, C, h, w] -> [N, C, h', w']

 private:
  Conv2d conv_{nullptr};
  int64_t padding_;
};
TORCH_MODULE(Downsample2D);

// Ref: diffusers resnet.py Upsample2D(use_conv=True): nearest x2 (or to `output_size`), 3x3 conv.
class Upsample2DImpl : public torch::nn::Module {
 public:
  explicit Upsample2DImpl(int64_t channels);
  at::Tensor forward(const at::Tensor& x, std::optional<std::array<int64_t, 2>> output_size = std::nullopt) const;

 private:
  Conv2d conv_{nullptr};
};
TORCH_MODULE(Upsample2D);

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
