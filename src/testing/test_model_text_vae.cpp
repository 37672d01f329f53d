#include "testing/test_model_text_vae.h"

#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>
#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>
#include <utility>

#include "core/check.h"
#include "core/safetensors.h"
#include "core/state_dict.h"
#include "testing/random_init.h"

namespace vi::testing {

using namespace vi::models;  // the model types these files build

namespace {

void check_dtype(const char* what, c10::ScalarType dtype) {
  VI_CHECK(dtype == c10::kFloat || dtype == c10::kHalf || dtype == c10::kBFloat16,
           "{}: dtype must be float32, float16 or bfloat16, got {}", what, c10::toString(dtype));
}

void write_text(const std::string& path, const std::string& text) {
  std::ofstream out(path);
  out << text << "\n";
  VI_CHECK(out.good(), "{}: cannot write", path);
}

// The module's tensors under `prefix`, converted to `dtype`.
std::vector<std::pair<std::string, at::Tensor>> tensors_of(const torch::nn::Module& module, const std::string& prefix,
                                                           c10::ScalarType dtype) {
  c10::InferenceMode guard;
  std::vector<std::pair<std::string, at::Tensor>> tensors;
  for (auto& [name, tensor] : core::named_state(module)) tensors.emplace_back(prefix + name, tensor.to(dtype));
  return tensors;
}

}  // namespace

std::vector<std::string> text_vae_preset_names() { return {"tiny", "small", "videocrafter2"}; }

ClipTextConfig clip_text_preset(const std::string& preset) {
  ClipTextConfig c;  // defaults = the real zeroscope / VideoCrafter2 text encoder
  if (preset == "videocrafter2") return c;
  if (preset == "tiny") {
    // tests/data/reference/models/tiny/cerspense/zeroscope_v2_576w/text_encoder/config.json
    c.vocab_size = 914;
    c.hidden_size = 32;
    c.intermediate_size = 64;
    c.num_hidden_layers = 2;
    c.num_attention_heads = 4;
    return c;
  }
  if (preset == "small") {
    c.hidden_size = 64;
    c.intermediate_size = 256;
    c.num_hidden_layers = 2;
    c.num_attention_heads = 4;
    return c;
  }
  VI_FAIL("unknown text encoder preset '{}' (tiny, small or videocrafter2)", preset);
}

AutoencoderKLConfig vae_preset(const std::string& preset) {
  AutoencoderKLConfig c;  // defaults = the real zeroscope / VideoCrafter2 VAE
  if (preset == "videocrafter2") return c;
  if (preset == "tiny") {
    // tests/data/reference/models/tiny/cerspense/zeroscope_v2_576w/vae/config.json
    c.block_out_channels = {16, 16, 32, 32};
    c.layers_per_block = 1;
    c.norm_num_groups = 8;
    return c;
  }
  if (preset == "small") {
    c.block_out_channels = {32, 64, 128, 128};
    c.layers_per_block = 1;
    c.norm_num_groups = 32;
    return c;
  }
  VI_FAIL("unknown VAE preset '{}' (tiny, small or videocrafter2)", preset);
}

std::string clip_text_config_json(const ClipTextConfig& config) {
  nlohmann::json j = {
      {"architectures", {"CLIPTextModel"}},
      {"attention_dropout", 0.0},
      {"bos_token_id", 0},
      {"dropout", 0.0},
      {"eos_token_id", config.eos_token_id},
      {"hidden_act", clip_activation_name(config.hidden_act)},
      {"hidden_size", config.hidden_size},
      {"initializer_factor", 1.0},
      {"initializer_range", 0.02},
      {"intermediate_size", config.intermediate_size},
      {"layer_norm_eps", config.layer_norm_eps},
      {"max_position_embeddings", config.max_position_embeddings},
      {"model_type", "clip_text_model"},
      {"num_attention_heads", config.num_attention_heads},
      {"num_hidden_layers", config.num_hidden_layers},
      {"pad_token_id", 1},
      {"projection_dim", 512},
      {"torch_dtype", "float32"},
      {"transformers_version", "4.42.0"},
      {"vocab_size", config.vocab_size},
  };
  return j.dump(2);
}

std::string vae_config_json(const AutoencoderKLConfig& config) {
  const size_t levels = config.block_out_channels.size();
  nlohmann::json j = {
      {"_class_name", "AutoencoderKL"},
      {"_diffusers_version", "0.29.2"},
      {"act_fn", "silu"},
      {"block_out_channels", config.block_out_channels},
      {"down_block_types", std::vector<std::string>(levels, "DownEncoderBlock2D")},
      {"force_upcast", true},
      {"in_channels", 3},
      {"latent_channels", config.latent_channels},
      {"latents_mean", nullptr},
      {"latents_std", nullptr},
      {"layers_per_block", config.layers_per_block},
      {"norm_num_groups", config.norm_num_groups},
      {"out_channels", config.out_channels},
      {"sample_size", 512},
      {"scaling_factor", config.scaling_factor},
      {"shift_factor", nullptr},
      {"up_block_types", std::vector<std::string>(levels, "UpDecoderBlock2D")},
      {"use_post_quant_conv", config.use_post_quant_conv},
      {"use_quant_conv", true},
  };
  if (!config.mid_block_add_attention) j["mid_block_add_attention"] = false;  // newer diffusers only
  return j.dump(2);
}

void write_test_text_encoder(const std::string& dir, const std::string& preset, uint64_t seed,
                             c10::ScalarType dtype) {
  check_dtype("write_test_text_encoder", dtype);
  const ClipTextConfig config = clip_text_preset(preset);
  ClipTextModel model(config);
  randomize_parameters(*model, seed);
  std::filesystem::create_directories(dir);
  core::save_safetensors(dir + "/model.safetensors", tensors_of(*model, kClipTextPrefix, dtype), {{"format", "pt"}});
  write_text(dir + "/config.json", clip_text_config_json(config));
}

void write_test_vae(const std::string& dir, const std::string& preset, uint64_t seed, c10::ScalarType dtype) {
  check_dtype("write_test_vae", dtype);
  const AutoencoderKLConfig config = vae_preset(preset);
  AutoencoderKL model(config);
  randomize_parameters(*model, seed);
  std::filesystem::create_directories(dir);
  core::save_safetensors(dir + "/diffusion_pytorch_model.safetensors", tensors_of(*model, "", dtype),
                         {{"format", "pt"}});
  write_text(dir + "/config.json", vae_config_json(config));
}

}  // namespace vi::testing
