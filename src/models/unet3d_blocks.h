// The level blocks of the UNet3D. Each layer of a block runs: ResnetBlock2D (per frame) ->
// TemporalConvLayer -> [Transformer2DModel (per frame) -> TransformerTemporalModel] in the
// cross-attention variants. Tensors are [B*F, C, h, w] (frames folded into the batch).
#pragma once

#include <ATen/Tensor.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/pimpl.h>

#include <array>
#include <cstdint>
#include <functional>
#include <optional>
#include <utility>
#include <vector>

#include "models/blocks_2d.h"
#include "models/temporal_context.h"
#include "models/unet3d_attention.h"
#include "models/unet3d_layers.h"

namespace vi::models {

// What every block needs besides its tensors.
struct FrameRun {
  TemporalContext& ctx;
  int64_t num_frames;
  int64_t frame_chunk;  // images (rows of B*F) per call of a per-frame layer; 0 = all at once
};

struct Block3DOptions {
  int64_t in_channels = 0;
  int64_t out_channels = 0;
  int64_t prev_output_channels = 0;  // up blocks: channels coming from the level below
  int64_t temb_channels = 0;
  int64_t num_layers = 1;
  int64_t groups = 32;
  double eps = 1e-5;
  // The config's attention_head_dim, which diffusers passes as the head-count argument:
  // transformers get C / head_dim heads of head_dim channels (ALGORITHM.md §3).
  int64_t head_dim = 64;
  int64_t cross_attention_dim = 1024;
  bool cross_attention = false;  // CrossAttnDownBlock3D / CrossAttnUpBlock3D
  bool resample = false;         // add_downsample / add_upsample
  int64_t downsample_padding = 1;
  double output_scale_factor = 1.0;  // mid block only (mid_block_scale_factor)
};

// The children each layer of a block adds to diffusers' lists of those names; attentions and
// temp_attentions stay empty in the blocks without cross-attention.
struct Layers3D {
  std::vector<ResnetBlock2D> resnets;
  std::vector<TemporalConvLayer> temp_convs;
  std::vector<Transformer2DModel> attentions;
  std::vector<TransformerTemporalModel> temp_attentions;
};

// Ref: diffusers unet_3d_blocks.py DownBlock3D, and CrossAttnDownBlock3D when
// options.cross_attention (the same layers plus attentions / temp_attentions).
class DownBlock3DImpl : public torch::nn::Module {
 public:
  explicit DownBlock3DImpl(const Block3DOptions& options);
  // x [B*F, Cin, h, w], temb [B*F, T], context [B*F, 77, D] (unused without cross-attention).
  // Returns the output and the skip states (one per layer, plus the downsampled output).
  std::pair<at::Tensor, std::vector<at::Tensor>> forward(const at::Tensor& x, const at::Tensor& temb,
                                                         const at::Tensor& context, const FrameRun& run) const;

 private:
  Layers3D layers_;
  Downsample2D downsampler_{nullptr};
};
TORCH_MODULE(DownBlock3D);

// Ref: diffusers unet_3d_blocks.py UNetMidBlock3DCrossAttn (one layer):
// resnet, temp_conv, then per layer [attention, temp_attention, resnet, temp_conv].
class UNetMidBlock3DCrossAttnImpl : public torch::nn::Module {
 public:
  explicit UNetMidBlock3DCrossAttnImpl(const Block3DOptions& options);
  at::Tensor forward(const at::Tensor& x, const at::Tensor& temb, const at::Tensor& context,
                     const FrameRun& run) const;

 private:
  Layers3D layers_;
};
TORCH_MODULE(UNetMidBlock3DCrossAttn);

// Ref: diffusers unet_3d_blocks.py UpBlock3D, and CrossAttnUpBlock3D when options.cross_attention.
// Each layer concatenates the next skip state (taken from the back of `skips`) on channels.
class UpBlock3DImpl : public torch::nn::Module {
 public:
  explicit UpBlock3DImpl(const Block3DOptions& options);
  int64_t num_layers() const { return static_cast<int64_t>(layers_.resnets.size()); }
  // skips: exactly num_layers() states, in the order the down path produced them.
  at::Tensor forward(const at::Tensor& x, std::vector<at::Tensor> skips, const at::Tensor& temb,
                     const at::Tensor& context, std::optional<std::array<int64_t, 2>> upsample_size,
                     const FrameRun& run) const;

 private:
  Layers3D layers_;
  Upsample2D upsampler_{nullptr};
};
TORCH_MODULE(UpBlock3D);

}  // namespace vi::models
