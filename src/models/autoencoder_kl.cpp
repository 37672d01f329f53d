#include "models/autoencoder_kl.h"

#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>
#include <torch/nn/modules/container/modulelist.h>

#include <algorithm>
#include <cmath>

#include "core/check.h"
#include "core/json_config.h"
#include "core/safetensors.h"
#include "core/state_dict.h"

namespace vi::models {

namespace {

constexpr double kEps = 1e-6;  // every norm of the diffusers VAE decoder

// Ref: resnet.py ResnetBlock2D as the VAE builds it: temb_channels None, output_scale_factor 1.
ResnetBlock2D resnet(int64_t in_channels, int64_t out_channels, int64_t groups) {
  return ResnetBlock2D(in_channels, out_channels, /*temb_channels=*/0, groups, kEps, /*output_scale_factor=*/1.0);
}

}  // namespace

AutoencoderKLConfig AutoencoderKLConfig::from_json(const core::JsonConfig& json) {
  AutoencoderKLConfig c;
  const std::string& origin = json.origin();
  c.block_out_channels = json.get<std::vector<int64_t>>("block_out_channels");
  c.layers_per_block = json.get<int64_t>("layers_per_block");
  c.latent_channels = json.get_or<int64_t>("latent_channels", 4);
  c.out_channels = json.get_or<int64_t>("out_channels", 3);
  c.norm_num_groups = json.get_or<int64_t>("norm_num_groups", 32);
  c.scaling_factor = json.get_or<double>("scaling_factor", 0.18215);
  c.use_post_quant_conv = json.get_or<bool>("use_post_quant_conv", true);
  c.mid_block_add_attention = json.get_or<bool>("mid_block_add_attention", true);

  VI_CHECK(!c.block_out_channels.empty(), "{}: key 'block_out_channels': empty", origin);
  VI_CHECK(c.norm_num_groups > 0, "{}: key 'norm_num_groups': must be positive, got {}", origin, c.norm_num_groups);
  for (int64_t ch : c.block_out_channels) {
    VI_CHECK(ch > 0 && ch % c.norm_num_groups == 0,
             "{}: key 'block_out_channels': {} is not a positive multiple of norm_num_groups {}", origin, ch,
             c.norm_num_groups);
  }
  VI_CHECK(c.layers_per_block >= 1, "{}: key 'layers_per_block': must be >= 1, got {}", origin, c.layers_per_block);
  VI_CHECK(c.latent_channels > 0, "{}: key 'latent_channels': must be positive, got {}", origin, c.latent_channels);
  VI_CHECK(c.out_channels > 0, "{}: key 'out_channels': must be positive, got {}", origin, c.out_channels);
  VI_CHECK(std::isfinite(c.scaling_factor) && c.scaling_factor > 0,
           "{}: key 'scaling_factor': must be positive, got {}", origin, c.scaling_factor);

  const std::string act = json.get_or<std::string>("act_fn", "silu");
  VI_CHECK(act == "silu" || act == "swish", "{}: key 'act_fn': '{}' is not supported (silu)", origin, act);
  const auto up = json.get<std::vector<std::string>>("up_block_types");
  VI_CHECK(up.size() == c.block_out_channels.size(),
           "{}: key 'up_block_types': {} blocks, but block_out_channels has {}", origin, up.size(),
           c.block_out_channels.size());
  for (const auto& type : up) {
    VI_CHECK(type == "UpDecoderBlock2D", "{}: key 'up_block_types': '{}' is not supported (UpDecoderBlock2D)", origin,
             type);
  }
  // Encoder-side fields (the encoder is never run), and fields the text-to-video pipeline's
  // decode does not use (latents_mean/std, shift_factor, force_upcast).
  json.ignore({"in_channels", "down_block_types", "sample_size", "use_quant_conv", "force_upcast", "latents_mean",
               "latents_std", "shift_factor"});
  json.warn_unread();
  return c;
}

AutoencoderKLConfig AutoencoderKLConfig::load(const std::string& path) {
  return from_json(core::JsonConfig::load(path));
}

// ---------------------------------------------------------------------------------------------
// Ref: unet_2d_blocks.py UNetMidBlock2D (num_layers 1: resnet, attention, resnet) with
// attention_head_dim = C (one head), resnet_eps 1e-6, output_scale_factor 1.

UNetMidBlock2DImpl::UNetMidBlock2DImpl(int64_t channels, int64_t groups, bool add_attention) {
  auto attentions = torch::nn::ModuleList(), resnets = torch::nn::ModuleList();
  resnets_ = {resnet(channels, channels, groups), resnet(channels, channels, groups)};
  if (add_attention) {
    AttentionOptions o;
    o.query_dim = channels;
    o.heads = 1;
    o.dim_head = channels;
    o.bias = true;
    o.norm_num_groups = groups;
    o.eps = kEps;
    o.residual_connection = true;
    o.arithmetic = LinearArithmetic::kMatmulThenAdd;  // this decoder's results were made with it
    attention_ = Attention(o);
    attentions->push_back(attention_);
  }
  for (const auto& r : resnets_) resnets->push_back(r);
  register_module("attentions", attentions);  // diffusers' order: attentions, then resnets
  register_module("resnets", resnets);
}

at::Tensor UNetMidBlock2DImpl::forward(const at::Tensor& x) const {
  at::Tensor h = resnets_[0]->forward(x);
  if (attention_) h = attention_->forward_image(h);
  return resnets_[1]->forward(h);
}

// ---------------------------------------------------------------------------------------------
// Ref: unet_2d_blocks.py UpDecoderBlock2D.

UpDecoderBlock2DImpl::UpDecoderBlock2DImpl(int64_t in_channels, int64_t out_channels, int64_t num_layers,
                                           int64_t groups, bool add_upsample) {
  auto resnets = torch::nn::ModuleList(), upsamplers = torch::nn::ModuleList();
  for (int64_t i = 0; i < num_layers; ++i) {
    resnets_.push_back(resnet(i == 0 ? in_channels : out_channels, out_channels, groups));
    resnets->push_back(resnets_.back());
  }
  if (add_upsample) {
    upsampler_ = Upsample2D(out_channels);
    upsamplers->push_back(upsampler_);
  }
  register_module("resnets", resnets);
  register_module("upsamplers", upsamplers);
}

at::Tensor UpDecoderBlock2DImpl::forward(const at::Tensor& x) const {
  at::Tensor h = x;
  for (const auto& resnet : resnets_) h = resnet->forward(h);
  if (!upsampler_) return h;
  // The mid-block attention's output has channels-last strides (its reshape is a view) and the
  // resnets keep them; this decoder upsamples and convolves in the standard layout, which its
  // results were made with (diffusers makes the input contiguous too, for batch >= 64).
  return upsampler_->forward(h.contiguous());
}

// ---------------------------------------------------------------------------------------------
// Ref: autoencoders/vae.py Decoder (norm_type "group").

VaeDecoderImpl::VaeDecoderImpl(const AutoencoderKLConfig& config) {
  const auto& channels = config.block_out_channels;
  const int64_t groups = config.norm_num_groups;
  conv_in_ = register_module("conv_in", Conv2d(config.latent_channels, channels.back(), 3, 1, 1));
  auto up_blocks = torch::nn::ModuleList();
  int64_t out = channels.back();
  for (size_t i = 0; i < channels.size(); ++i) {
    const int64_t in = out;
    out = channels[channels.size() - 1 - i];
    const bool is_final = i + 1 == channels.size();
    up_blocks_.emplace_back(in, out, config.layers_per_block + 1, groups, !is_final);
    up_blocks->push_back(up_blocks_.back());
  }
  register_module("up_blocks", up_blocks);  // before mid_block: the order of diffusers' __init__
  mid_block_ = register_module("mid_block", UNetMidBlock2D(channels.back(), groups, config.mid_block_add_attention));
  conv_norm_out_ = register_module("conv_norm_out", GroupNorm(groups, channels.front(), kEps));
  conv_out_ = register_module("conv_out", Conv2d(channels.front(), config.out_channels, 3, 1, 1));
}

at::Tensor VaeDecoderImpl::forward(const at::Tensor& z) const {
  at::Tensor x = conv_in_->forward(z);                              // [N, C_last, h, w]
  x = mid_block_->forward(x);                                        // [N, C_last, h, w]
  for (const auto& block : up_blocks_) x = block->forward(x);        // [N, C_0, H, W]
  return conv_out_->forward(at::silu(conv_norm_out_->forward(x)));  // [N, out, H, W]
}

// ---------------------------------------------------------------------------------------------
// Ref: autoencoder_kl.py AutoencoderKL._decode; pipeline_text_to_video_synth.py decode_latents.

AutoencoderKLImpl::AutoencoderKLImpl(const AutoencoderKLConfig& config) : config_(config) {
  decoder_ = register_module("decoder", VaeDecoder(config));
  if (config.use_post_quant_conv) {
    post_quant_conv_ = register_module("post_quant_conv", Conv2d(config.latent_channels, config.latent_channels, 1));
  }
}

at::Tensor AutoencoderKLImpl::scale_latents(const at::Tensor& latents) const {
  VI_CHECK(latents.dim() == 5 && latents.size(1) == config_.latent_channels,
           "VAE: latents must be [batch, {}, frames, height, width], got {}", config_.latent_channels,
           core::shape_str(latents.sizes().vec()));
  c10::InferenceMode guard;
  const at::Tensor& weight = decoder_->conv_in_weight();
  const int64_t b = latents.size(0), c = latents.size(1), f = latents.size(2), h = latents.size(3),
                w = latents.size(4);
  // The reference multiplies by the Python float 1/scaling_factor, which torch applies to a
  // float32 tensor as float32(1/scaling_factor).
  const float inv_scale = static_cast<float>(1.0 / config_.scaling_factor);
  at::Tensor x = latents.to(weight.device(), weight.scalar_type()) * inv_scale;  // [B, C, F, h, w]
  return x.permute({0, 2, 1, 3, 4}).reshape({b * f, c, h, w});                   // [B*F, C, h, w]
}

at::Tensor AutoencoderKLImpl::decode(const at::Tensor& z) const {
  VI_CHECK(z.dim() == 4 && z.size(1) == config_.latent_channels, "VAE: decoder input must be [N, {}, h, w], got {}",
           config_.latent_channels, core::shape_str(z.sizes().vec()));
  c10::InferenceMode guard;
  at::Tensor x = post_quant_conv_ ? post_quant_conv_->forward(z) : z;  // [N, C, h, w]
  return decoder_->forward(x);                                          // [N, 3, H, W]
}

at::Tensor AutoencoderKLImpl::decode_latents(const at::Tensor& latents, int64_t vae_chunk) const {
  c10::InferenceMode guard;
  at::Tensor z = scale_latents(latents);  // [B*F, C, h, w]
  const int64_t b = latents.size(0), f = latents.size(2), n = z.size(0);
  const int64_t chunk = vae_chunk <= 0 ? n : std::min(vae_chunk, n);
  at::Tensor images;  // [B*F, 3, H, W]
  for (int64_t begin = 0; begin < n; begin += chunk) {
    const int64_t end = std::min(begin + chunk, n);
    at::Tensor part = decode(z.slice(0, begin, end));  // [end-begin, 3, H, W]
    if (!images.defined()) {
      images = at::empty({n, part.size(1), part.size(2), part.size(3)}, part.options());
    }
    images.slice(0, begin, end).copy_(part);
  }
  const int64_t ch = images.size(1), height = images.size(2), width = images.size(3);
  return images.view({b, f, ch, height, width}).permute({0, 2, 1, 3, 4}).contiguous();  // [B, 3, F, H, W]
}

AutoencoderKL load_vae(const std::string& dir, c10::ScalarType dtype, c10::Device device) {
  AutoencoderKL model(AutoencoderKLConfig::load(dir + "/config.json"));
  core::LoadOptions options;
  options.ignored_names = {"encoder.*", "quant_conv.*"};
  if (!model->config().use_post_quant_conv) options.ignored_names.push_back("post_quant_conv.*");
  options.dtype = dtype;
  options.device = device;
  core::load_state_dict(*model, core::WeightStore::open(dir), options);
  model->eval();
  return model;
}

// ---------------------------------------------------------------------------------------------
// Ref: image_processor.py VaeImageProcessor.postprocess / denormalize; video_processor.py.

at::Tensor postprocess_frames(const at::Tensor& images) {
  VI_CHECK(images.dim() == 5, "VAE: images must be [batch, 3, frames, height, width], got {}",
           core::shape_str(images.sizes().vec()));
  c10::InferenceMode guard;
  at::Tensor x = images.to(at::kCPU, at::kFloat).permute({0, 2, 3, 4, 1});  // [B, F, H, W, 3]
  return (x / 2 + 0.5).clamp(0, 1).contiguous();
}

at::Tensor to_uint8_frames(const at::Tensor& images) {
  c10::InferenceMode guard;
  at::Tensor frames = postprocess_frames(images);  // [B, F, H, W, 3]
  // fp16 rounding, then x255 rounded to fp16, then truncation: the reference's export.
  at::Tensor u8 = frames.to(at::kHalf).mul(255).to(at::kByte);
  return u8.reshape({-1, u8.size(2), u8.size(3), u8.size(4)});  // [B*F, H, W, 3]
}

}  // namespace vi::models
