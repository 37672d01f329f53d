// AutoencoderKL (diffusers), decoder side only, inference only: latents -> images in [-1, 1].
// Children are registered under diffusers' attribute names, so parameter names equal the
// checkpoint's (decoder.mid_block.attentions.0.to_q.weight, post_quant_conv.weight, ...).
// The encoder and quant_conv weights in the checkpoint are ignored. Built from the blocks the
// UNet uses too (models/blocks_2d.h: ResnetBlock2D, Upsample2D; models/attention.h: Attention).
// Ref: diffusers models/autoencoders/autoencoder_kl.py, autoencoders/vae.py (Decoder),
//      unets/unet_2d_blocks.py (UNetMidBlock2D, UpDecoderBlock2D).
#pragma once

#include <ATen/Tensor.h>
#include <c10/core/Device.h>
#include <c10/core/ScalarType.h>
#include <torch/nn/module.h>
#include <torch/nn/pimpl.h>

#include <cstdint>
#include <string>
#include <vector>

#include "models/attention.h"
#include "models/blocks_2d.h"
#include "models/nn.h"

namespace vi::core {
class JsonConfig;
}

namespace vi::models {

// The fields of vae/config.json that change the decoder's computation.
struct AutoencoderKLConfig {
  std::vector<int64_t> block_out_channels{128, 256, 512, 512};
  int64_t layers_per_block = 2;
  int64_t latent_channels = 4;
  int64_t out_channels = 3;
  int64_t norm_num_groups = 32;
  double scaling_factor = 0.18215;
  bool use_post_quant_conv = true;
  bool mid_block_add_attention = true;

  // Reads the keys above (act_fn must be silu, every up block UpDecoderBlock2D); refuses
  // unsupported values naming the key; warns about unknown keys.
  static AutoencoderKLConfig from_json(const core::JsonConfig& json);
  static AutoencoderKLConfig load(const std::string& path);
};

// Ref: unet_2d_blocks.py UNetMidBlock2D (num_layers 1, no time embedding): resnet, then
// (attention, resnet) pairs; the attention is diffusers' single-head group-norm + residual one.
class UNetMidBlock2DImpl : public torch::nn::Module {
 public:
  UNetMidBlock2DImpl(int64_t channels, int64_t groups, bool add_attention);
  at::Tensor forward(const at::Tensor& x) const;  // [N, C, h, w] -> [N, C, h, w]

 private:
  std::vector<ResnetBlock2D> resnets_;
  Attention attention_{nullptr};  // null without mid_block_add_attention
};
TORCH_MODULE(UNetMidBlock2D);

// Ref: unet_2d_blocks.py UpDecoderBlock2D (no time embedding).
class UpDecoderBlock2DImpl : public torch::nn::Module {
 public:
  UpDecoderBlock2DImpl(int64_t in_channels, int64_t out_channels, int64_t num_layers, int64_t groups,
                       bool add_upsample);
  at::Tensor forward(const at::Tensor& x) const;  // [N, Cin, h, w] -> [N, Cout, 2h, 2w] ([N, Cout, h, w] last)

 private:
  std::vector<ResnetBlock2D> resnets_;
  Upsample2D upsampler_{nullptr};  // null on the last block
};
TORCH_MODULE(UpDecoderBlock2D);

// Ref: vae.py Decoder (norm_type "group").
class VaeDecoderImpl : public torch::nn::Module {
 public:
  explicit VaeDecoderImpl(const AutoencoderKLConfig& config);
  at::Tensor forward(const at::Tensor& z) const;  // [N, latent, h, w] -> [N, out, 8h, 8w] (3 upsamplings)
  const at::Tensor& conv_in_weight() const { return conv_in_->weight; }

 private:
  Conv2d conv_in_{nullptr};
  std::vector<UpDecoderBlock2D> up_blocks_;
  UNetMidBlock2D mid_block_{nullptr};
  GroupNorm conv_norm_out_{nullptr};
  Conv2d conv_out_{nullptr};
};
TORCH_MODULE(VaeDecoder);

class AutoencoderKLImpl : public torch::nn::Module {
 public:
  explicit AutoencoderKLImpl(const AutoencoderKLConfig& config);

  // latents [B, C, F, h, w] as the sampler leaves them -> [B*F, C, h, w] multiplied by
  // float32(1 / scaling_factor), in the model's dtype and on its device (the reference's VAE input).
  at::Tensor scale_latents(const at::Tensor& latents) const;
  // post_quant_conv + decoder on already scaled latents: [N, C, h, w] -> [N, 3, H, W] in [-1, 1].
  at::Tensor decode(const at::Tensor& z) const;
  // The whole reference decode: scale, then decode `vae_chunk` frames per call (<= 0: all at
  // once; the reference decodes 1 at a time, other chunk sizes agree to float rounding).
  // latents [B, C, F, h, w] -> images [B, 3, F, H, W] in the model's dtype, contiguous.
  at::Tensor decode_latents(const at::Tensor& latents, int64_t vae_chunk) const;

  const AutoencoderKLConfig& config() const { return config_; }

 private:
  AutoencoderKLConfig config_;
  VaeDecoder decoder_{nullptr};
  Conv2d post_quant_conv_{nullptr};  // null when use_post_quant_conv is false
};
TORCH_MODULE(AutoencoderKL);

// dir holds config.json and diffusion_pytorch_model.safetensors (or a sharded checkpoint).
// Loads post_quant_conv and the decoder, converted to `dtype` on `device`; encoder.* and
// quant_conv.* are ignored; every other problem with the checkpoint is reported in one error.
AutoencoderKL load_vae(const std::string& dir, c10::ScalarType dtype, c10::Device device);

// Ref: VaeImageProcessor.postprocess (denormalize): images [B, 3, F, H, W] in [-1, 1] (any
// dtype, device) -> float32 [B, F, H, W, 3] = clamp(x / 2 + 0.5, 0, 1), on the CPU.
at::Tensor postprocess_frames(const at::Tensor& images);

// The reference's export of those frames: uint8(trunc(fp16(fp16(frames) * 255))).
// images [B, 3, F, H, W] -> uint8 [B*F, H, W, 3] on the CPU (B = 1 in the pipeline).
at::Tensor to_uint8_frames(const at::Tensor& images);

}  // namespace vi::models
