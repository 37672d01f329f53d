// diffusers' Attention (q/k/v/out projections around the attention kernel), one class for every
// use in the diffusers models here: the UNet's spatial self- and cross-attention, its temporal
// attention over frames, and the VAE mid-block's single-head attention over pixels.
#pragma once

#include <ATen/Tensor.h>
#include <torch/nn/module.h>
#include <torch/nn/pimpl.h>

#include <cstdint>

#include "models/nn.h"
#include "models/temporal_context.h"

namespace vi::models {

// The constructor arguments of diffusers' Attention that the models here set.
struct AttentionOptions {
  int64_t query_dim = 0;
  int64_t cross_attention_dim = 0;  // 0: self-attention (keys from the queries' own input)
  int64_t heads = 1;
  int64_t dim_head = 0;
  bool bias = false;            // biases on to_q / to_k / to_v (to_out.0 always has one)
  int64_t norm_num_groups = 0;  // > 0: a group_norm (eps below) on the input of forward_image
  double eps = 1e-5;
  bool residual_connection = false;  // forward_image adds its input
  LinearArithmetic arithmetic = LinearArithmetic::kAtenLinear;  // of the four projections (nn.h)
};

// Ref: diffusers attention_processor.py Attention + AttnProcessor2_0: [group_norm], to_q, to_k,
// to_v, to_out = [Linear, Dropout]; `heads` heads of `dim_head` channels, scale dim_head ** -0.5,
// rescale_output_factor 1.
class AttentionImpl : public torch::nn::Module {
 public:
  explicit AttentionImpl(const AttentionOptions& options);
  // The UNet's form: no biases on q/k/v, no group norm, no residual.
  AttentionImpl(int64_t query_dim, int64_t cross_attention_dim, int64_t heads, int64_t dim_head);

  // x [N, S, query_dim]; context [N, Sk, cross_dim] or undefined (self-attention).
  // temporal non-null: the attention over frames of a temporal transformer, run by the context.
  at::Tensor forward(const at::Tensor& x, const at::Tensor& context, TemporalContext* temporal) const;
  // diffusers' 4-d input (UNetMidBlock2D): self-attention over the h*w pixels of x [N, C, h, w],
  // after the group_norm, plus x with residual_connection. -> [N, C, h, w]
  at::Tensor forward_image(const at::Tensor& x) const;
  int64_t heads() const { return heads_; }

 private:
  GroupNorm group_norm_{nullptr};
  Linear to_q_{nullptr}, to_k_{nullptr}, to_v_{nullptr}, to_out_{nullptr};
  int64_t heads_, dim_head_;
  bool residual_connection_;
};
TORCH_MODULE(Attention);

}  // namespace vi::models
