#include "models/autoencoder_kl.h"

#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>
#include <torch/nn/modules/dropout.h>

#include <algorithm>
#include <array>
#include <cmath>

#include "core/check.h"
#include "core/json_config.h"
#include "core/safetensors.h"
#include "core/state_dict.h"
#include "models/sdpa.h"

namespace vi::models {

namespace {

constexpr double kEps = 1e-6;  // every norm of the diffusers VAE decoder

torch::nn::GroupNorm group_norm(int64_t groups, int64_t channels) {
  return torch::nn::GroupNorm(torch::nn::GroupNormOptions(groups, channels).eps(kEps).affine(true));
}

torch::nn::Conv2d conv3x3(int64_t in, int64_t out) {
  return torch::nn::Conv2d(torch::nn::Conv2dOptions(in, out, 3).stride(1).padding(1).bias(true));
}

torch::nn::Conv2d conv1x1(int64_t in, int64_t out) {
  return torch::nn::Conv2d(torch::nn::Conv2dOptions(in, out, 1).stride(1).padding(0).bias(true));
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

namespace vae {

// ---------------------------------------------------------------------------------------------
// Ref: diffusers resnet.py ResnetBlock2D (temb None, time_embedding_norm "default").

ResnetBlock2DImpl::ResnetBlock2DImpl(int64_t in_channels, int64_t out_channels, int64_t groups) {
  norm1 = register_module("norm1", group_norm(groups, in_channels));
  conv1 = register_module("conv1", conv3x3(in_channels, out_channels));
  norm2 = register_module("norm2", group_norm(groups, out_channels));
  conv2 = register_module("conv2", conv3x3(out_channels, out_channels));
  if (in_channels != out_channels) conv_shortcut = register_module("conv_shortcut", conv1x1(in_channels, out_channels));
}

at::Tensor ResnetBlock2DImpl::forward(const at::Tensor& x) {
  at::Tensor h = conv1(at::silu(norm1(x)));  // [N, Cout, H, W]
  h = conv2(at::silu(norm2(h)));              // [N, Cout, H, W]
  at::Tensor shortcut = conv_shortcut ? conv_shortcut(x) : x;
  return shortcut + h;  // output_scale_factor 1
}

// ---------------------------------------------------------------------------------------------
// Ref: attention_processor.py Attention(heads = 1, dim_head = C, norm_num_groups, eps 1e-6,
// residual_connection, rescale_output_factor 1, upcast_softmax) with AttnProcessor2_0.

AttentionImpl::AttentionImpl(int64_t channels, int64_t groups) {
  group_norm = register_module("group_norm", vi::models::group_norm(groups, channels));
  to_q = register_module("to_q", torch::nn::Linear(channels, channels));
  to_k = register_module("to_k", torch::nn::Linear(channels, channels));
  to_v = register_module("to_v", torch::nn::Linear(channels, channels));
  to_out = register_module("to_out", torch::nn::ModuleList());
  to_out->push_back(torch::nn::Linear(channels, channels));
  to_out->push_back(torch::nn::Dropout(0.0));  // placeholder: keeps the index of to_out.0
}

at::Tensor AttentionImpl::forward(const at::Tensor& x) {
  const int64_t n = x.size(0), c = x.size(1), height = x.size(2), width = x.size(3);
  at::Tensor h = group_norm(x).view({n, c, height * width}).transpose(1, 2);  // [N, HW, C]
  at::Tensor q = to_q(h), k = to_k(h), v = to_v(h);                          // [N, HW, C]
  at::Tensor o = dot_product_attention(q, k, v, 1.0 / std::sqrt(static_cast<double>(c)));  // [N, HW, C], one head
  o = to_out[0]->as<torch::nn::LinearImpl>()->forward(o);  // [N, HW, C]
  o = o.transpose(1, 2).reshape({n, c, height, width});    // [N, C, H, W]
  return o + x;                                            // residual, rescale 1
}

// ---------------------------------------------------------------------------------------------
// Ref: unet_2d_blocks.py UNetMidBlock2D (num_layers 1: resnet, attention, resnet).

UNetMidBlock2DImpl::UNetMidBlock2DImpl(int64_t channels, int64_t groups, bool add_attention) {
  attentions = register_module("attentions", torch::nn::ModuleList());
  resnets = register_module("resnets", torch::nn::ModuleList());
  resnets->push_back(ResnetBlock2D(channels, channels, groups));
  if (add_attention) attentions->push_back(Attention(channels, groups));
  resnets->push_back(ResnetBlock2D(channels, channels, groups));
}

at::Tensor UNetMidBlock2DImpl::forward(at::Tensor x) {
  x = resnets[0]->as<ResnetBlock2DImpl>()->forward(x);
  if (!attentions->is_empty()) x = attentions[0]->as<AttentionImpl>()->forward(x);
  return resnets[1]->as<ResnetBlock2DImpl>()->forward(x);
}

// ---------------------------------------------------------------------------------------------
// Ref: upsampling.py Upsample2D (use_conv, interpolate nearest x2).

Upsample2DImpl::Upsample2DImpl(int64_t channels) {
  conv = register_module("conv", conv3x3(channels, channels));
}

at::Tensor Upsample2DImpl::forward(const at::Tensor& x) {
  const std::array<int64_t, 2> size{x.size(2) * 2, x.size(3) * 2};
  // Nearest neighbour copies values: exact in any dtype (diffusers upcasts bf16 only because
  // older torch lacked the bf16 kernel).
  at::Tensor up = at::upsample_nearest2d(x.contiguous(), at::IntArrayRef(size));  // [N, C, 2H, 2W]
  return conv(up);
}

// ---------------------------------------------------------------------------------------------
// Ref: unet_2d_blocks.py UpDecoderBlock2D.

UpDecoderBlock2DImpl::UpDecoderBlock2DImpl(int64_t in_channels, int64_t out_channels, int64_t num_layers,
                                           int64_t groups, bool add_upsample) {
  resnets = register_module("resnets", torch::nn::ModuleList());
  for (int64_t i = 0; i < num_layers; ++i) {
    resnets->push_back(ResnetBlock2D(i == 0 ? in_channels : out_channels, out_channels, groups));
  }
  upsamplers = register_module("upsamplers", torch::nn::ModuleList());
  if (add_upsample) upsamplers->push_back(Upsample2D(out_channels));
}

at::Tensor UpDecoderBlock2DImpl::forward(at::Tensor x) {
  for (const auto& resnet : *resnets) x = resnet->as<ResnetBlock2DImpl>()->forward(x);
  for (const auto& up : *upsamplers) x = up->as<Upsample2DImpl>()->forward(x);
  return x;
}

// ---------------------------------------------------------------------------------------------
// Ref: autoencoders/vae.py Decoder (norm_type "group").

DecoderImpl::DecoderImpl(const AutoencoderKLConfig& config) {
  const auto& channels = config.block_out_channels;
  const int64_t groups = config.norm_num_groups;
  conv_in = register_module("conv_in", conv3x3(config.latent_channels, channels.back()));
  up_blocks = register_module("up_blocks", torch::nn::ModuleList());
  mid_block = register_module("mid_block", UNetMidBlock2D(channels.back(), groups, config.mid_block_add_attention));
  int64_t out = channels.back();
  for (size_t i = 0; i < channels.size(); ++i) {
    const int64_t in = out;
    out = channels[channels.size() - 1 - i];
    const bool is_final = i + 1 == channels.size();
    up_blocks->push_back(UpDecoderBlock2D(in, out, config.layers_per_block + 1, groups, !is_final));
  }
  conv_norm_out = register_module("conv_norm_out", group_norm(groups, channels.front()));
  conv_out = register_module("conv_out", conv3x3(channels.front(), config.out_channels));
}

at::Tensor DecoderImpl::forward(const at::Tensor& z) {
  at::Tensor x = conv_in(z);  // [N, C_last, h, w]
  x = mid_block(x);           // [N, C_last, h, w]
  for (const auto& block : *up_blocks) x = block->as<UpDecoderBlock2DImpl>()->forward(x);  // [N, C_0, H, W]
  return conv_out(at::silu(conv_norm_out(x)));                                              // [N, out, H, W]
}

}  // namespace vae

// ---------------------------------------------------------------------------------------------
// Ref: autoencoder_kl.py AutoencoderKL._decode; pipeline_text_to_video_synth.py decode_latents.

AutoencoderKLImpl::AutoencoderKLImpl(const AutoencoderKLConfig& config) : config_(config) {
  decoder = register_module("decoder", vae::Decoder(config));
  if (config.use_post_quant_conv) {
    post_quant_conv = register_module("post_quant_conv", conv1x1(config.latent_channels, config.latent_channels));
  }
}

at::Tensor AutoencoderKLImpl::scale_latents(const at::Tensor& latents) const {
  VI_CHECK(latents.dim() == 5 && latents.size(1) == config_.latent_channels,
           "VAE: latents must be [batch, {}, frames, height, width], got {}", config_.latent_channels,
           core::shape_str(latents.sizes().vec()));
  c10::InferenceMode guard;
  const at::Tensor& weight = decoder->conv_in->weight;
  const int64_t b = latents.size(0), c = latents.size(1), f = latents.size(2), h = latents.size(3),
                w = latents.size(4);
  // The reference multiplies by the Python float 1/scaling_factor, which torch applies to a
  // float32 tensor as float32(1/scaling_factor).
  const float inv_scale = static_cast<float>(1.0 / config_.scaling_factor);
  at::Tensor x = latents.to(weight.device(), weight.scalar_type()) * inv_scale;  // [B, C, F, h, w]
  return x.permute({0, 2, 1, 3, 4}).reshape({b * f, c, h, w});                   // [B*F, C, h, w]
}

at::Tensor AutoencoderKLImpl::decode(const at::Tensor& z) {
  VI_CHECK(z.dim() == 4 && z.size(1) == config_.latent_channels, "VAE: decoder input must be [N, {}, h, w], got {}",
           config_.latent_channels, core::shape_str(z.sizes().vec()));
  c10::InferenceMode guard;
  at::Tensor x = post_quant_conv ? post_quant_conv(z) : z;  // [N, C, h, w]
  return decoder(x);                                         // [N, 3, H, W]
}

at::Tensor AutoencoderKLImpl::decode_latents(const at::Tensor& latents, int64_t vae_chunk) {
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
