// AutoencoderKL (diffusers), decoder side only, inference only: latents -> images in [-1, 1].
// Children are registered under diffusers' attribute names, so parameter names equal the
// checkpoint's (decoder.mid_block.attentions.0.to_q.weight, post_quant_conv.weight, ...).
// The encoder and quant_conv weights in the checkpoint are ignored.
// Ref: diffusers models/autoencoders/autoencoder_kl.py, autoencoders/vae.py (Decoder),
//      unets/unet_2d_blocks.py (UNetMidBlock2D, UpDecoderBlock2D), resnet.py (ResnetBlock2D),
//      upsampling.py (Upsample2D), attention_processor.py (Attention, AttnProcessor).
#pragma once

#include <ATen/Tensor.h>
#include <c10/core/Device.h>
#include <c10/core/ScalarType.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/normalization.h>
#include <torch/nn/pimpl.h>

#include <cstdint>
#include <string>
#include <vector>

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

// The decoder's building blocks. Their own namespace: the UNet has classes of the same names
// with other structure (time embeddings, temporal layers).
namespace vae {

// Ref: resnet.py ResnetBlock2D without time embedding, output_scale_factor 1, eps 1e-6.
class ResnetBlock2DImpl : public torch::nn::Module {
 public:
  ResnetBlock2DImpl(int64_t in_channels, int64_t out_channels, int64_t groups);
  at::Tensor forward(const at::Tensor& x);  // [N, Cin, H, W] -> [N, Cout, H, W]

  torch::nn::GroupNorm norm1{nullptr}, norm2{nullptr};
  torch::nn::Conv2d conv1{nullptr}, conv2{nullptr}, conv_shortcut{nullptr};  // conv_shortcut iff Cin != Cout
};
TORCH_MODULE(ResnetBlock2D);

// Ref: attention_processor.py Attention as built by UNetMidBlock2D: group norm, one head of all
// channels, q/k/v/out with biases, residual connection, rescale_output_factor 1.
class AttentionImpl : public torch::nn::Module {
 public:
  AttentionImpl(int64_t channels, int64_t groups);
  at::Tensor forward(const at::Tensor& x);  // [N, C, H, W] -> [N, C, H, W]

  torch::nn::GroupNorm group_norm{nullptr};
  torch::nn::Linear to_q{nullptr}, to_k{nullptr}, to_v{nullptr};
  torch::nn::ModuleList to_out{nullptr};  // [Linear, Dropout]
};
TORCH_MODULE(Attention);

// Ref: unet_2d_blocks.py UNetMidBlock2D: resnet, then (attention, resnet) pairs.
class UNetMidBlock2DImpl : public torch::nn::Module {
 public:
  UNetMidBlock2DImpl(int64_t channels, int64_t groups, bool add_attention);
  at::Tensor forward(at::Tensor x);

  torch::nn::ModuleList attentions{nullptr}, resnets{nullptr};
};
TORCH_MODULE(UNetMidBlock2D);

// Ref: upsampling.py Upsample2D(use_conv=True): nearest x2, then a 3x3 conv.
class Upsample2DImpl : public torch::nn::Module {
 public:
  explicit Upsample2DImpl(int64_t channels);
  at::Tensor forward(const at::Tensor& x);  // [N, C, H, W] -> [N, C, 2H, 2W]

  torch::nn::Conv2d conv{nullptr};
};
TORCH_MODULE(Upsample2D);

// Ref: unet_2d_blocks.py UpDecoderBlock2D.
class UpDecoderBlock2DImpl : public torch::nn::Module {
 public:
  UpDecoderBlock2DImpl(int64_t in_channels, int64_t out_channels, int64_t num_layers, int64_t groups,
                       bool add_upsample);
  at::Tensor forward(at::Tensor x);

  torch::nn::ModuleList resnets{nullptr}, upsamplers{nullptr};  // upsamplers: empty on the last block
};
TORCH_MODULE(UpDecoderBlock2D);

// Ref: vae.py Decoder.
class DecoderImpl : public torch::nn::Module {
 public:
  explicit DecoderImpl(const AutoencoderKLConfig& config);
  at::Tensor forward(const at::Tensor& z);  // [N, latent, h, w] -> [N, out, 8h, 8w] (3 upsamplings)

  torch::nn::Conv2d conv_in{nullptr};
  torch::nn::ModuleList up_blocks{nullptr};
  UNetMidBlock2D mid_block{nullptr};
  torch::nn::GroupNorm conv_norm_out{nullptr};
  torch::nn::Conv2d conv_out{nullptr};
};
TORCH_MODULE(Decoder);

}  // namespace vae

class AutoencoderKLImpl : public torch::nn::Module {
 public:
  explicit AutoencoderKLImpl(const AutoencoderKLConfig& config);

  // latents [B, C, F, h, w] as the sampler leaves them -> [B*F, C, h, w] multiplied by
  // float32(1 / scaling_factor), in the model's dtype and on its device (the reference's VAE input).
  at::Tensor scale_latents(const at::Tensor& latents) const;
  // post_quant_conv + decoder on already scaled latents: [N, C, h, w] -> [N, 3, H, W] in [-1, 1].
  at::Tensor decode(const at::Tensor& z);
  // The whole reference decode: scale, then decode `vae_chunk` frames per call (<= 0: all at
  // once; the reference decodes 1 at a time, other chunk sizes agree to float rounding).
  // latents [B, C, F, h, w] -> images [B, 3, F, H, W] in the model's dtype, contiguous.
  at::Tensor decode_latents(const at::Tensor& latents, int64_t vae_chunk);

  const AutoencoderKLConfig& config() const { return config_; }

  vae::Decoder decoder{nullptr};
  torch::nn::Conv2d post_quant_conv{nullptr};  // null when use_post_quant_conv is false

 private:
  AutoencoderKLConfig config_;
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
