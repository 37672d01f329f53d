// The 2D convolutional blocks diffusers' UNets and VAEs share: ResnetBlock2D, Downsample2D and
// Upsample2D. The UNet3D runs them per frame (frames folded into the batch), the VAE decoder on
// images. Children carry the diffusers attribute names.
#pragma once

#include <ATen/Tensor.h>
#include <torch/nn/module.h>
#include <torch/nn/pimpl.h>

#include <array>
#include <cstdint>
#include <optional>

#include "models/nn.h"

namespace vi::models {

// Ref: diffusers resnet.py ResnetBlock2D (time_embedding_norm "default", pre-norm, silu):
// conv2(silu(norm2(conv1(silu(norm1(x))) + time_emb_proj(silu(temb))))) + shortcut(x), divided
// by output_scale_factor. temb_channels 0 builds no time_emb_proj (diffusers' temb_channels None,
// as in the VAE, whose blocks also use eps 1e-6 and output_scale_factor 1).
class ResnetBlock2DImpl : public torch::nn::Module {
 public:
  ResnetBlock2DImpl(int64_t in_channels, int64_t out_channels, int64_t temb_channels, int64_t groups, double eps,
                    double output_scale_factor);
  // x [N, Cin, h, w], temb [N, T] (undefined without time_emb_proj) -> [N, Cout, h, w]
  at::Tensor forward(const at::Tensor& x, const at::Tensor& temb = at::Tensor()) const;

 private:
  GroupNorm norm1_{nullptr}, norm2_{nullptr};
  Conv2d conv1_{nullptr}, conv2_{nullptr}, conv_shortcut_{nullptr};  // conv_shortcut iff Cin != Cout
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
  // [N, C, h, w] -> [N, C, 2h, 2w] (or output_size)
  at::Tensor forward(const at::Tensor& x, std::optional<std::array<int64_t, 2>> output_size = std::nullopt) const;

 private:
  Conv2d conv_{nullptr};
};
TORCH_MODULE(Upsample2D);

}  // namespace vi::models
