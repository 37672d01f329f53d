#include "models/blocks_2d.h"

#include <ATen/ATen.h>

namespace vi::models {

ResnetBlock2DImpl::ResnetBlock2DImpl(int64_t in_channels, int64_t out_channels, int64_t temb_channels, int64_t groups,
                                     double eps, double output_scale_factor)
    : output_scale_factor_(output_scale_factor) {
  norm1_ = register_module("norm1", GroupNorm(groups, in_channels, eps));
  conv1_ = register_module("conv1", Conv2d(in_channels, out_channels, 3, 1, 1));
  if (temb_channels > 0) time_emb_proj_ = register_module("time_emb_proj", Linear(temb_channels, out_channels));
  norm2_ = register_module("norm2", GroupNorm(groups, out_channels, eps));
  conv2_ = register_module("conv2", Conv2d(out_channels, out_channels, 3, 1, 1));
  if (in_channels != out_channels) {
    conv_shortcut_ = register_module("conv_shortcut", Conv2d(in_channels, out_channels, 1, 1, 0));
  }
}

at::Tensor ResnetBlock2DImpl::forward(const at::Tensor& x, const at::Tensor& temb) const {
  at::Tensor h = conv1_->forward(at::silu(norm1_->forward(x)));  // [N, Cout, h, w]
  if (time_emb_proj_) {
    h = h + time_emb_proj_->forward(at::silu(temb)).unsqueeze(-1).unsqueeze(-1);  // + [N, Cout, 1, 1]
  }
  h = conv2_->forward(at::silu(norm2_->forward(h)));
  at::Tensor shortcut = conv_shortcut_ ? conv_shortcut_->forward(x) : x;
  at::Tensor out = shortcut + h;
  if (output_scale_factor_ != 1.0) out = out / output_scale_factor_;
  return out;
}

Downsample2DImpl::Downsample2DImpl(int64_t channels, int64_t padding) : padding_(padding) {
  conv_ = register_module("conv", Conv2d(channels, channels, 3, 2, padding));
}

at::Tensor Downsample2DImpl::forward(const at::Tensor& x) const {
  // Ref: diffusers Downsample2D: padding 0 means an asymmetric (0, 1, 0, 1) zero pad first.
  if (padding_ == 0) return conv_->forward(at::constant_pad_nd(x, {0, 1, 0, 1}));
  return conv_->forward(x);
}

Upsample2DImpl::Upsample2DImpl(int64_t channels) {
  conv_ = register_module("conv", Conv2d(channels, channels, 3, 1, 1));
}

at::Tensor Upsample2DImpl::forward(const at::Tensor& x, std::optional<std::array<int64_t, 2>> output_size) const {
  std::array<int64_t, 2> size = output_size ? *output_size : std::array<int64_t, 2>{x.size(2) * 2, x.size(3) * 2};
  // Nearest upsampling copies values, exact in any dtype; bf16 goes through float32 as in
  // diffusers for torch < 2.1, which lacked the bf16 kernel (this project accepts LibTorch 2.0).
  at::Tensor h = x.scalar_type() == at::kBFloat16
                     ? at::upsample_nearest2d(x.to(at::kFloat), {size[0], size[1]}).to(at::kBFloat16)
                     : at::upsample_nearest2d(x, {size[0], size[1]});  // [N, C, 2h, 2w]
  return conv_->forward(h);
}

}  // namespace vi::models
