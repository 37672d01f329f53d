#include "models/unet3d_layers.h"

#include <ATen/ATen.h>

#include <cmath>
#include <string>

#include "core/check.h"

namespace vi::models {

at::Tensor timestep_embedding(const at::Tensor& t, int64_t dim, bool flip_sin_to_cos, double downscale_freq_shift) {
  VI_CHECK(t.dim() == 1, "timestep_embedding: expected timesteps [N], got {} dims", t.dim());
  const int64_t half = dim / 2;
  // Same float32 operation order as diffusers, so the angles match to the last bit.
  at::Tensor exponent = at::arange(0, half, t.options().dtype(at::kFloat)) * (-std::log(10000.0));
  exponent = exponent / (static_cast<double>(half) - downscale_freq_shift);
  at::Tensor angles = t.to(at::kFloat).unsqueeze(1) * exponent.exp().unsqueeze(0);  // [N, half]
  at::Tensor emb = flip_sin_to_cos ? at::cat({angles.cos(), angles.sin()}, -1) : at::cat({angles.sin(), angles.cos()}, -1);
  if (dim % 2 == 1) emb = at::constant_pad_nd(emb, {0, 1});
  return emb;  // [N, dim]
}

TimestepEmbeddingImpl::TimestepEmbeddingImpl(int64_t in_channels, int64_t time_embed_dim) {
  linear_1_ = register_module("linear_1", Linear(in_channels, time_embed_dim));
  linear_2_ = register_module("linear_2", Linear(time_embed_dim, time_embed_dim));
}

at::Tensor TimestepEmbeddingImpl::forward(const at::Tensor& x) const {
  return linear_2_->forward(at::silu(linear_1_->forward(x)));
}

TemporalConvLayerImpl::TemporalConvLayerImpl(int64_t channels, int64_t groups) {
  for (int i = 0; i < 4; ++i) {
    // conv1 = [GroupNorm, SiLU, Conv3d]; conv2..4 = [GroupNorm, SiLU, Dropout, Conv3d].
    auto list = torch::nn::ModuleList();
    norms_[i] = GroupNorm(groups, channels, 1e-5);  // nn.GroupNorm's default eps
    convs_[i] = Conv3d(channels, channels, std::array<int64_t, 3>{3, 1, 1}, std::array<int64_t, 3>{1, 0, 0});
    list->push_back(norms_[i]);
    list->push_back(Placeholder());
    if (i > 0) list->push_back(Placeholder());
    list->push_back(convs_[i]);
    register_module("conv" + std::to_string(i + 1), list);
  }
}

at::Tensor TemporalConvLayerImpl::convs(const at::Tensor& x, TemporalContext& ctx) const {
  at::Tensor h = x;
  for (int i = 0; i < 4; ++i) {
    const auto& norm = *norms_[i];
    h = at::silu(ctx.group_norm(h, norm.groups(), norm.weight, norm.bias, norm.eps()));
    h = convs_[i]->forward(h);  // [B, C, F', h, w]
  }
  return h;
}

at::Tensor TemporalConvLayerImpl::forward(const at::Tensor& x, int64_t num_frames, TemporalContext& ctx) const {
  const int64_t BF = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  VI_CHECK(BF % num_frames == 0, "temporal conv: {} images are not a multiple of {} frames", BF, num_frames);
  at::Tensor video = x.reshape({BF / num_frames, num_frames, C, H, W}).permute({0, 2, 1, 3, 4});  // [B, C, F, h, w]
  at::Tensor delta = ctx.temporal_conv(video, [&](const at::Tensor& v) { return convs(v, ctx); });
  at::Tensor out = video + delta;                                                    // [B, C, F, h, w]
  return out.permute({0, 2, 1, 3, 4}).reshape({BF, C, H, W});                       // [B*F, C, h, w]
}

}  // namespace vi::models
