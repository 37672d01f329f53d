// Random-weight CLIP text encoders and VAE decoders for tests and benchmarks, written in the
// exact layouts of the real downloads (text_encoder/: config.json + model.safetensors with the
// "text_model." prefix; vae/: config.json + diffusion_pytorch_model.safetensors), every
// parameter random (testing/random_init.h).
#pragma once

#include <c10/core/ScalarType.h>

#include <cstdint>
#include <string>
#include <vector>

#include "models/autoencoder_kl.h"
#include "models/clip_text.h"

namespace vi::testing {

// Presets (anything else is an error listing them):
//   "tiny": the reference tiny model (text 32 wide, 2 layers, 4 heads, intermediate 64, vocab 914;
//     VAE [16, 16, 32, 32], 1 layer, 8 groups);
//   "small": text 64 wide (= the small UNet's cross_attention_dim), 2 layers, 4 heads,
//     intermediate 256, the real CLIP vocabulary (49408); VAE [32, 64, 128, 128], 1 layer, 32 groups;
//   "videocrafter2": the real zeroscope_v2_576w configs (text 1024 wide, 23 layers, 16 heads,
//     intermediate 4096, gelu, vocab 49408; VAE [128, 256, 512, 512], 2 layers, 32 groups).
// All: 77 positions, gelu, layer_norm_eps 1e-5, latent 4 channels, scaling_factor 0.18215.
std::vector<std::string> text_vae_preset_names();
models::ClipTextConfig clip_text_preset(const std::string& preset);
models::AutoencoderKLConfig vae_preset(const std::string& preset);

// The config.json a transformers / diffusers export of that config holds (documentation-only
// keys included, so that the loader sees the real file's keys).
std::string clip_text_config_json(const models::ClipTextConfig& config);
std::string vae_config_json(const models::AutoencoderKLConfig& config);

// Writes dir/config.json and dir/model.safetensors (tensors in `dtype`); creates dir.
void write_test_text_encoder(const std::string& dir, const std::string& preset, uint64_t seed,
                             c10::ScalarType dtype = c10::kFloat);
// Writes dir/config.json and dir/diffusion_pytorch_model.safetensors with post_quant_conv and
// the decoder only (our loader ignores the encoder, so none is written); creates dir.
void write_test_vae(const std::string& dir, const std::string& preset, uint64_t seed,
                    c10::ScalarType dtype = c10::kFloat);

}  // namespace vi::testing
