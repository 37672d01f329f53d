// What every temporal layer of the UNet calls: the temporal conv layers (TemporalConvLayer),
// the temporal attentions (attn1/attn2 of every TransformerTemporalModel, transformer_in
// included) and the temporal GroupNorms. It is passed down at forward time, never global, so
// that the model code knows nothing about how frames are distributed.
//
// PlainTemporalContext is single-process diffusers behaviour, exactly. A distributed context
// (Video-Infinity, ALGORITHM.md §6; vi::parallel::DualScopeContext) derives from TemporalContext
// and overrides every hook; what it must do is written on each hook below.
#pragma once

#include <ATen/Tensor.h>

#include <cstdint>
#include <functional>

namespace vi::models {

class TemporalContext {
 public:
  virtual ~TemporalContext() = default;

  // Called once at the start of every UNet forward, before any temporal layer.
  //   timestep: the UNet timestep (the first element when a tensor of timesteps is given);
  //     a distributed context picks its phase biases from it (§6.5).
  //   batch: the UNet batch B, i.e. the CFG branches [uncond, cond] x the clips held locally,
  //     in that order (batch-major). Every temporal tensor below carries B in its leading dims.
  virtual void begin_call(double timestep, int64_t batch) = 0;

  // A temporal conv layer's four convs. x [B, C, F, h, w]; `convs` runs conv1..conv4 on a
  // tensor of any frame count F' (their GroupNorms, through group_norm() below, see all F'
  // frames) and returns [B, C, F', h, w]. Returns the convs' output for the F own frames,
  // [B, C, F, h, w], WITHOUT the identity (the layer adds it).
  // Plain: convs(x). Distributed: extend x on the frame dim with the last Pc frames of the
  // previous clip and the first Pc frames of the next one (zeros at the video's ends), run
  // convs on F + 2Pc frames, crop back to frames [Pc, Pc + F).
  virtual at::Tensor temporal_conv(const at::Tensor& x,
                                   const std::function<at::Tensor(const at::Tensor&)>& convs) = 0;

  // Temporal self-attention over frames, after the q/k/v projections and the head split and
  // before to_out. q, k, v [B*n*heads, F, d], batch-major (row = (b*n + pixel)*heads + head),
  // where n = h*w, or fewer pixels when the model's frame_chunk splits a temporal transformer
  // into pixel subsets (then one call per subset, the same sequence of calls on every rank that
  // runs the same settings).
  // Returns softmax(q k^T * scale) v, [B*h*w*heads, F, d], with scale = 1/sqrt(d) (diffusers'
  // Attention default, dim_head ** -0.5).
  // Distributed: keys/values become [left P halo | own F | right P halo | G global frames]
  // (halo exchange with the neighbouring clips, all-gather of the global frames), with the
  // banded additive bias and the per-timestep phase biases, scale multiplied by attn_scale.
  virtual at::Tensor attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v) = 0;

  // The temporal GroupNorms: TransformerTemporalModel.norm and the four GroupNorms of each
  // temporal conv layer. x [B, C, F, h, w] (F may include halo frames). Plain: at::group_norm.
  // Distributed (optional GroupNorm sync): statistics over the whole video, i.e. the per-rank
  // means averaged over ranks, the variance around that global mean averaged likewise.
  virtual at::Tensor group_norm(const at::Tensor& x, int64_t groups, const at::Tensor& weight,
                                const at::Tensor& bias, double eps) = 0;
};

// Single-process diffusers behaviour.
class PlainTemporalContext final : public TemporalContext {
 public:
  void begin_call(double timestep, int64_t batch) override;
  at::Tensor temporal_conv(const at::Tensor& x,
                           const std::function<at::Tensor(const at::Tensor&)>& convs) override;
  at::Tensor attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v) override;
  at::Tensor group_norm(const at::Tensor& x, int64_t groups, const at::Tensor& weight, const at::Tensor& bias,
                        double eps) override;

  double timestep() const { return timestep_; }
  int64_t batch() const { return batch_; }

 private:
  double timestep_ = 0;
  int64_t batch_ = 0;
};

}  // namespace vi::models
