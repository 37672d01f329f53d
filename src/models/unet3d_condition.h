// UNet3DConditionModel (diffusers) with VideoCrafter2's fps conditioning (fps_proj /
// fps_embedding), configured from its config.json and loaded strictly under the diffusers
// parameter names. ALGORITHM.md §3.
#pragma once

#include <ATen/Tensor.h>
#include <c10/core/Device.h>
#include <c10/core/ScalarType.h>
#include <nlohmann/json.hpp>
#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/pimpl.h>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "core/json_config.h"
#include "models/temporal_context.h"
#include "models/unet3d_attention.h"
#include "models/unet3d_blocks.h"
#include "models/unet3d_layers.h"

namespace vi::models {

// Every config.json field that changes the computation. Defaults are diffusers'.
struct UNet3DConfig {
  int64_t in_channels = 4;
  int64_t out_channels = 4;
  std::vector<std::string> down_block_types = {"CrossAttnDownBlock3D", "CrossAttnDownBlock3D",
                                               "CrossAttnDownBlock3D", "DownBlock3D"};
  std::vector<std::string> up_block_types = {"UpBlock3D", "CrossAttnUpBlock3D", "CrossAttnUpBlock3D",
                                             "CrossAttnUpBlock3D"};
  std::vector<int64_t> block_out_channels = {320, 640, 1280, 1280};
  int64_t layers_per_block = 2;
  int64_t downsample_padding = 1;
  double mid_block_scale_factor = 1.0;
  std::string act_fn = "silu";
  int64_t norm_num_groups = 32;
  double norm_eps = 1e-5;
  int64_t cross_attention_dim = 1024;
  // Used as the head COUNT argument by diffusers since num_attention_heads must be null:
  // transformers get C / attention_head_dim heads of attention_head_dim channels.
  int64_t attention_head_dim = 64;
  bool fps_cond = true;  // VideoCrafter2: fps_proj / fps_embedding added to the time embedding

  // Reads config.json; unsupported values are refused naming the field, unknown keys warned
  // about. fps_cond defaults to true for a "*VideoCrafter*" _class_name, false otherwise.
  static UNet3DConfig from_json(const core::JsonConfig& json);
  static UNet3DConfig load(const std::string& path);
  // The diffusers config.json of this configuration (what write_test_unet writes).
  nlohmann::json to_json() const;
  // Throws naming the field for anything the model cannot build or diffusers would refuse.
  void validate(const std::string& origin = "UNet3DConfig") const;
};

// Per-stage outputs for parity tests, named like the reference's forward hooks: time_proj,
// fps_proj, fps_embedding, time_embedding (per batch element, fps included), conv_in,
// transformer_in, down_blocks.<i>, mid_block, up_blocks.<i>, conv_out ([B*F, C, h, w]).
using StageMap = std::map<std::string, at::Tensor>;

class UNet3DConditionModelImpl : public torch::nn::Module {
 public:
  explicit UNet3DConditionModelImpl(const UNet3DConfig& config);

  // sample [B, in, F, h, w], timestep: a 0-d tensor or [B] (any dtype), encoder_hidden_states
  // [B, S, cross_attention_dim] (the CFG batch [uncond, cond] rides along in B) or per frame
  // [B*F, S, cross_attention_dim] (row b*F + f for frame f of sample b: the spatial
  // cross-attention runs per frame; the temporal layers see no text), fps (used when
  // config.fps_cond). Inputs are converted to the model's dtype and device; returns
  // [B, out, F, h, w] in the model's dtype. Wrap calls in c10::InferenceMode.
  at::Tensor forward(const at::Tensor& sample, const at::Tensor& timestep, const at::Tensor& encoder_hidden_states,
                     double fps, TemporalContext& ctx, StageMap* stages = nullptr) const;
  at::Tensor forward(const at::Tensor& sample, double timestep, const at::Tensor& encoder_hidden_states, double fps,
                     TemporalContext& ctx, StageMap* stages = nullptr) const;

  // Images (rows of B*F) per call of the per-frame layers (resnets, spatial transformers,
  // down/upsamplers, conv_in/out), and as many tokens (frame_chunk * h * w) per call of the
  // temporal transformers' blocks, which then run on pixel subsets; 0 = all at once. Same
  // result (to reduction order); peak memory then grows with F only through the temporal conv
  // layers and the [B*F, C, h, w] tensors that exist anyway.
  void set_frame_chunk(int64_t images) { frame_chunk_ = images; }
  int64_t frame_chunk() const { return frame_chunk_; }

  // Runs the per-frame [B*F, C, h, w] activations and the 2D conv weights in channels-last
  // (NHWC) memory format, which cuDNN's tensor-core convolutions prefer and which makes the
  // spatial transformers' NCHW <-> token permutes free. Same result (to the convolution
  // algorithm's rounding); the output is returned in the standard layout. Converts the 4-d
  // parameters in place: call after moving the model to its device and dtype.
  void set_channels_last(bool on);
  bool channels_last() const { return channels_last_; }

  const UNet3DConfig& config() const { return config_; }
  int64_t num_parameters() const;
  c10::ScalarType dtype() const;
  c10::Device device() const;

 private:
  UNet3DConfig config_;
  int64_t frame_chunk_ = 0;
  bool channels_last_ = false;
  int64_t num_upsamplers_ = 0;
  Conv2d conv_in_{nullptr}, conv_out_{nullptr};
  TimestepEmbedding time_embedding_{nullptr}, fps_embedding_{nullptr};
  TransformerTemporalModel transformer_in_{nullptr};
  std::vector<DownBlock3D> down_blocks_;
  UNetMidBlock3DCrossAttn mid_block_{nullptr};
  std::vector<UpBlock3D> up_blocks_;
  GroupNorm conv_norm_out_{nullptr};
};
TORCH_MODULE(UNet3DConditionModel);

// dir/config.json + the checkpoint in dir (diffusion_pytorch_model.safetensors, sharded or
// not), loaded strictly (every problem in one error) into `dtype` on `device`.
UNet3DConditionModel load_unet3d(const std::string& dir, c10::ScalarType dtype = c10::kFloat,
                                 c10::Device device = c10::kCPU);

}  // namespace vi::models
