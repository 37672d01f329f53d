#include "models/unet3d_attention.h"

#include <ATen/ATen.h>

#include <algorithm>

#include "core/check.h"

namespace vi::models {

GEGLUImpl::GEGLUImpl(int64_t dim_in, int64_t dim_out) {
  proj_ = register_module("proj", Linear(dim_in, dim_out * 2));
}

at::Tensor GEGLUImpl::forward(const at::Tensor& x) const {
  auto parts = proj_->forward(x).chunk(2, -1);  // hidden, gate: [..., dim_out] each
  return parts[0] * at::gelu(parts[1]);
}

FeedForwardImpl::FeedForwardImpl(int64_t dim) {
  const int64_t inner = dim * 4;
  auto net = torch::nn::ModuleList();
  geglu_ = GEGLU(dim, inner);
  out_ = Linear(inner, dim);
  net->push_back(geglu_);
  net->push_back(Placeholder());  // Dropout
  net->push_back(out_);
  register_module("net", net);
}

at::Tensor FeedForwardImpl::forward(const at::Tensor& x) const { return out_->forward(geglu_->forward(x)); }

BasicTransformerBlockImpl::BasicTransformerBlockImpl(int64_t dim, int64_t heads, int64_t dim_head,
                                                     int64_t cross_attention_dim) {
  norm1_ = register_module("norm1", LayerNorm(dim, 1e-5));
  attn1_ = register_module("attn1", Attention(dim, 0, heads, dim_head));
  norm2_ = register_module("norm2", LayerNorm(dim, 1e-5));
  attn2_ = register_module("attn2", Attention(dim, cross_attention_dim, heads, dim_head));
  norm3_ = register_module("norm3", LayerNorm(dim, 1e-5));
  ff_ = register_module("ff", FeedForward(dim));
}

at::Tensor BasicTransformerBlockImpl::forward(const at::Tensor& x, const at::Tensor& context,
                                              TemporalContext* temporal) const {
  at::Tensor h = x + attn1_->forward(norm1_->forward(x), at::Tensor(), temporal);
  h = h + attn2_->forward(norm2_->forward(h), context, temporal);
  return h + ff_->forward(norm3_->forward(h));
}

Transformer2DModelImpl::Transformer2DModelImpl(int64_t heads, int64_t dim_head, int64_t in_channels, int64_t groups,
                                               int64_t cross_attention_dim) {
  const int64_t inner = heads * dim_head;
  norm_ = register_module("norm", GroupNorm(groups, in_channels, 1e-6));
  proj_in_ = register_module("proj_in", Linear(in_channels, inner));
  auto blocks = torch::nn::ModuleList();
  block_ = BasicTransformerBlock(inner, heads, dim_head, cross_attention_dim);
  blocks->push_back(block_);
  register_module("transformer_blocks", blocks);
  proj_out_ = register_module("proj_out", Linear(inner, in_channels));
}

at::Tensor Transformer2DModelImpl::forward(const at::Tensor& x, const at::Tensor& context) const {
  const int64_t N = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  at::Tensor h = norm_->forward(x).permute({0, 2, 3, 1}).reshape({N, H * W, C});  // [N, h*w, C]
  h = proj_in_->forward(h);                                                         // [N, h*w, inner]
  h = block_->forward(h, context, nullptr);
  h = proj_out_->forward(h);                                                        // [N, h*w, C]
  return h.view({N, H, W, C}).permute({0, 3, 1, 2}) + x;                            // [N, C, h, w]
}

TransformerTemporalModelImpl::TransformerTemporalModelImpl(int64_t heads, int64_t dim_head, int64_t in_channels,
                                                           int64_t groups) {
  const int64_t inner = heads * dim_head;
  norm_ = register_module("norm", GroupNorm(groups, in_channels, 1e-6));
  proj_in_ = register_module("proj_in", Linear(in_channels, inner));
  auto blocks = torch::nn::ModuleList();
  block_ = BasicTransformerBlock(inner, heads, dim_head, /*cross_attention_dim=*/0);
  blocks->push_back(block_);
  register_module("transformer_blocks", blocks);
  proj_out_ = register_module("proj_out", Linear(inner, in_channels));
}

at::Tensor TransformerTemporalModelImpl::forward(const at::Tensor& x, int64_t num_frames, TemporalContext& ctx,
                                                 int64_t frame_chunk) const {
  const int64_t BF = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3), HW = H * W;
  VI_CHECK(BF % num_frames == 0, "temporal transformer: {} images are not a multiple of {} frames", BF, num_frames);
  const int64_t B = BF / num_frames, F = num_frames;
  at::Tensor video = x.reshape({B, F, C, H, W}).permute({0, 2, 1, 3, 4});  // [B, C, F, h, w]
  const auto& norm = *norm_;
  at::Tensor normed = ctx.group_norm(video, norm.groups(), norm.weight, norm.bias, norm.eps());
  normed = normed.permute({0, 3, 4, 2, 1}).reshape({B, HW, F, C});  // [B, h*w, F, C]

  // Pixels are independent after the GroupNorm (attention runs over frames), so the block can
  // run on pixel subsets: with frame_chunk > 0, about frame_chunk * h * w tokens at a time
  // (B x n pixels x F frames), like a per-frame layer on frame_chunk images.
  auto pixels = [&](const at::Tensor& part) {  // [B, n, F, C] -> [B, n, F, C]
    const int64_t n = part.size(1);
    at::Tensor t = proj_in_->forward(part.reshape({B * n, F, C}));  // [B*n, F, inner]
    t = block_->forward(t, at::Tensor(), &ctx);
    return proj_out_->forward(t).view({B, n, F, C});
  };
  const int64_t n = frame_chunk > 0 ? std::clamp<int64_t>(frame_chunk * HW / (B * F), 1, HW) : HW;
  at::Tensor out;
  if (n >= HW) {
    out = pixels(normed);
  } else {
    out = at::empty({B, HW, F, C}, normed.options());
    for (int64_t p = 0; p < HW; p += n) {
      const int64_t len = std::min(n, HW - p);
      out.narrow(1, p, len).copy_(pixels(normed.narrow(1, p, len)));
    }
  }
  out = out.view({B, H, W, F, C}).permute({0, 3, 4, 1, 2}).reshape({BF, C, H, W});  // [B*F, C, h, w]
  return out + x;
}

}  // namespace vi::models
