// The transformers of the UNet3D: GEGLU feed-forward, BasicTransformerBlock, Transformer2DModel
// (spatial, linear projections) and TransformerTemporalModel (attention over frames), around
// models/attention.h's Attention. Children carry the diffusers names.
#pragma once

#include <ATen/Tensor.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/pimpl.h>

#include <cstdint>

#include "models/attention.h"
#include "models/nn.h"
#include "models/temporal_context.h"

namespace vi::models {

// Ref: diffusers activations.py GEGLU: proj to 2 x dim_out, x * gelu(gate) (exact gelu).
class GEGLUImpl : public torch::nn::Module {
 public:
  GEGLUImpl(int64_t dim_in, int64_t dim_out);
  at::Tensor forward(const at::Tensor& x) const;

 private:
  Linear proj_{nullptr};
};
TORCH_MODULE(GEGLU);

// Ref: diffusers attention.py FeedForward(activation "geglu", mult 4): net = [GEGLU, Dropout, Linear].
class FeedForwardImpl : public torch::nn::Module {
 public:
  explicit FeedForwardImpl(int64_t dim);
  at::Tensor forward(const at::Tensor& x) const;

 private:
  GEGLU geglu_{nullptr};
  Linear out_{nullptr};
};
TORCH_MODULE(FeedForward);

// Ref: diffusers attention.py BasicTransformerBlock (norm_type "layer_norm", eps 1e-5):
// x += attn1(norm1(x)); x += attn2(norm2(x), context); x += ff(norm3(x)).
// cross_attention_dim 0 builds attn2 as a second self-attention (double_self_attention).
class BasicTransformerBlockImpl : public torch::nn::Module {
 public:
  BasicTransformerBlockImpl(int64_t dim, int64_t heads, int64_t dim_head, int64_t cross_attention_dim);
  // x [N, S, dim], context [N, Sk, cross_dim] or undefined; temporal: see Attention.
  at::Tensor forward(const at::Tensor& x, const at::Tensor& context, TemporalContext* temporal) const;

 private:
  LayerNorm norm1_{nullptr}, norm2_{nullptr}, norm3_{nullptr};
  Attention attn1_{nullptr}, attn2_{nullptr};
  FeedForward ff_{nullptr};
};
TORCH_MODULE(BasicTransformerBlock);

// Ref: diffusers transformer_2d.py Transformer2DModel with use_linear_projection, one layer:
// GroupNorm (eps 1e-6) -> proj_in -> block (self-attn, cross-attn on text, FF) -> proj_out -> + x.
class Transformer2DModelImpl : public torch::nn::Module {
 public:
  Transformer2DModelImpl(int64_t heads, int64_t dim_head, int64_t in_channels, int64_t groups,
                         int64_t cross_attention_dim);
  // x [N, C, h, w], context [N, Sk, cross_dim] -> [N, C, h, w]
  at::Tensor forward(const at::Tensor& x, const at::Tensor& context) const;

 private:
  GroupNorm norm_{nullptr};
  Linear proj_in_{nullptr}, proj_out_{nullptr};
  BasicTransformerBlock block_{nullptr};
};
TORCH_MODULE(Transformer2DModel);

// Ref: diffusers transformer_temporal.py TransformerTemporalModel, one layer, attn1 and attn2
// both self-attention over frames, no positional embedding. Its GroupNorm (eps 1e-6) goes
// through ctx.group_norm and both attentions through ctx.attention.
class TransformerTemporalModelImpl : public torch::nn::Module {
 public:
  TransformerTemporalModelImpl(int64_t heads, int64_t dim_head, int64_t in_channels, int64_t groups);
  // x [B*F, C, h, w] -> [B*F, C, h, w]. frame_chunk > 0: after the GroupNorm, the block runs on
  // subsets of n pixels (all B, all F frames; about frame_chunk * h * w tokens) at a time, so
  // ctx.attention is then called once per subset with [B*n*heads, F, d].
  at::Tensor forward(const at::Tensor& x, int64_t num_frames, TemporalContext& ctx, int64_t frame_chunk = 0) const;

 private:
  GroupNorm norm_{nullptr};
  Linear proj_in_{nullptr}, proj_out_{nullptr};
  BasicTransformerBlock block_{nullptr};
};
TORCH_MODULE(TransformerTemporalModel);

}  // namespace vi::models
