#include "testing/test_model_unet.h"

#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>

#include <filesystem>
#include <fstream>

#include "core/check.h"
#include "core/safetensors.h"
#include "core/state_dict.h"
#include "testing/random_init.h"

namespace vi::testing {

using namespace vi::models;  // the model types these files build

std::vector<std::string> unet_preset_names() { return {"tiny", "small", "videocrafter2"}; }

UNet3DConfig unet_preset(const std::string& preset) {
  UNet3DConfig c;  // diffusers defaults = the VideoCrafter2 UNet, plus fps_cond
  c.fps_cond = true;
  if (preset == "videocrafter2") {
    // ALGORITHM.md §1: [320, 640, 1280, 1280], 2 layers, head dim 64, text 1024, 32 groups.
    return c;
  }
  if (preset == "tiny") {
    // tests/data/reference/models/tiny/adamdad/videocrafterv2_diffusers/config.json
    c.block_out_channels = {32, 64};
    c.down_block_types = {"CrossAttnDownBlock3D", "DownBlock3D"};
    c.up_block_types = {"UpBlock3D", "CrossAttnUpBlock3D"};
    c.layers_per_block = 1;
    c.norm_num_groups = 8;
    c.attention_head_dim = 8;
    c.cross_attention_dim = 32;
    return c;
  }
  if (preset == "small") {
    c.block_out_channels = {64, 128, 128};
    c.down_block_types = {"CrossAttnDownBlock3D", "CrossAttnDownBlock3D", "DownBlock3D"};
    c.up_block_types = {"UpBlock3D", "CrossAttnUpBlock3D", "CrossAttnUpBlock3D"};
    c.layers_per_block = 2;
    c.norm_num_groups = 32;
    c.attention_head_dim = 32;
    c.cross_attention_dim = 64;
    return c;
  }
  VI_FAIL("unknown UNet preset '{}' (tiny, small or videocrafter2)", preset);
}

UNet3DConditionModel make_random_unet(const std::string& preset, uint64_t seed, c10::Device device,
                                      c10::ScalarType dtype) {
  UNet3DConditionModel model(unet_preset(preset));  // parameters are at::empty: no page touched yet
  if (!device.is_cpu() || dtype != c10::kFloat) model->to(device, dtype);
  randomize_parameters(*model, seed);
  return model;
}

void write_test_unet(const std::string& dir, const std::string& preset, uint64_t seed, c10::ScalarType dtype) {
  VI_CHECK(dtype == c10::kFloat || dtype == c10::kHalf || dtype == c10::kBFloat16,
           "write_test_unet: dtype must be float32, float16 or bfloat16, got {}", c10::toString(dtype));
  UNet3DConditionModel model = make_random_unet(preset, seed);
  std::filesystem::create_directories(dir);
  std::vector<std::pair<std::string, at::Tensor>> tensors;
  {
    c10::InferenceMode guard;
    for (auto& [name, tensor] : core::named_state(*model)) tensors.emplace_back(name, tensor.to(dtype));
  }
  core::save_safetensors(dir + "/diffusion_pytorch_model.safetensors", tensors, {{"format", "pt"}});
  std::ofstream out(dir + "/config.json");
  out << model->config().to_json().dump(2) << "\n";
  VI_CHECK(out.good(), "{}/config.json: cannot write", dir);
}

}  // namespace vi::testing
