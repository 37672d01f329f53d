// The module tree of the VideoCrafter2-config UNet: parameter count (the published 1.4133 B) and
// representative diffusers parameter names and shapes per block kind. The expected names and
// shapes are derived by hand from diffusers 0.29 unet_3d_condition.py (UNet3DConditionModel:
// conv_in, time_embedding, transformer_in with 8 heads x attention_head_dim, down/up/mid
// blocks, conv_norm_out, conv_out), unet_3d_blocks.py (resnets / temp_convs / attentions /
// temp_attentions / downsamplers / upsamplers; up-block resnet inputs prev_output + skip),
// resnet.py (ResnetBlock2D, TemporalConvLayer as Sequential conv1 = [GN, SiLU, Conv3d], conv2..4
// = [GN, SiLU, Dropout, Conv3d]), attention.py (BasicTransformerBlock norm1/attn1/norm2/attn2/
// norm3/ff.net.0.proj/ff.net.2), attention_processor.py (to_q/k/v without bias, to_out.0) and
// the reference's UNetVideoCrafter (fps_embedding = TimestepEmbedding(320, 1280)). The tiny
// preset's full name/shape list is checked against the reference checkpoint by the strict
// loader in tests/model/test_unet_forward.cpp.
#include <gtest/gtest.h>

#include <map>
#include <string>
#include <vector>

#include "core/state_dict.h"
#include "testing/test_model_unet.h"
#include "models/unet3d_condition.h"

namespace {

std::map<std::string, std::vector<int64_t>> shapes_of(const torch::nn::Module& module) {
  std::map<std::string, std::vector<int64_t>> out;
  for (const auto& [name, t] : vi::core::named_state(module)) out[name] = t.sizes().vec();
  return out;
}

size_t count_containing(const std::map<std::string, std::vector<int64_t>>& shapes, const std::string& a,
                        const std::string& b) {
  size_t n = 0;
  for (const auto& [name, shape] : shapes) n += name.find(a) != std::string::npos && name.find(b) != std::string::npos;
  return n;
}

TEST(UNetStructure, VideoCrafter2HasThePublishedParameterCount) {
  // Parameters are allocated but never written: constructing 1.4 B of them is instant.
  vi::models::UNet3DConditionModel model(vi::testing::unet_preset("videocrafter2"));
  const int64_t n = model->num_parameters();
  std::printf("  videocrafter2 UNet: %lld parameters in %zu tensors\n", static_cast<long long>(n),
              model->parameters().size());
  // 1,413,284,420 = the diffusers UNet3DConditionModel of this config (1,411,233,860) plus
  // fps_embedding (2,050,560): 1.4133 B rounded to 4 digits, as published.
  EXPECT_EQ(n, 1413284420);
  EXPECT_NEAR(static_cast<double>(n) / 1e9, 1.4133, 0.00005);
  EXPECT_EQ(model->buffers().size(), 0u);  // the checkpoint holds parameters only
}

TEST(UNetStructure, VideoCrafter2NamesAndShapesFollowDiffusers) {
  vi::models::UNet3DConditionModel model(vi::testing::unet_preset("videocrafter2"));
  const auto shapes = shapes_of(*model);
  using S = std::vector<int64_t>;
  const std::vector<std::pair<std::string, S>> expected = {
      // stem and embeddings
      {"conv_in.weight", {320, 4, 3, 3}},
      {"time_embedding.linear_1.weight", {1280, 320}},
      {"time_embedding.linear_2.weight", {1280, 1280}},
      {"fps_embedding.linear_1.weight", {1280, 320}},
      {"fps_embedding.linear_2.bias", {1280}},
      // transformer_in: 8 heads x 64 = 512 inner dims over 320 channels
      {"transformer_in.norm.weight", {320}},
      {"transformer_in.proj_in.weight", {512, 320}},
      {"transformer_in.transformer_blocks.0.attn1.to_q.weight", {512, 512}},
      {"transformer_in.transformer_blocks.0.attn2.to_k.weight", {512, 512}},
      {"transformer_in.transformer_blocks.0.attn2.to_out.0.weight", {512, 512}},
      {"transformer_in.transformer_blocks.0.ff.net.0.proj.weight", {4096, 512}},
      {"transformer_in.transformer_blocks.0.ff.net.2.weight", {512, 2048}},
      {"transformer_in.proj_out.weight", {320, 512}},
      // CrossAttnDownBlock3D
      {"down_blocks.0.resnets.0.norm1.weight", {320}},
      {"down_blocks.0.resnets.0.conv1.weight", {320, 320, 3, 3}},
      {"down_blocks.0.resnets.0.time_emb_proj.weight", {320, 1280}},
      {"down_blocks.0.temp_convs.1.conv1.0.weight", {320}},
      {"down_blocks.0.temp_convs.1.conv1.2.weight", {320, 320, 3, 1, 1}},
      {"down_blocks.0.temp_convs.1.conv4.3.bias", {320}},
      {"down_blocks.0.attentions.0.norm.bias", {320}},
      {"down_blocks.0.attentions.0.proj_in.weight", {320, 320}},  // linear projection
      {"down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_k.weight", {320, 320}},
      {"down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k.weight", {320, 1024}},  // text
      {"down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_v.weight", {320, 1024}},
      {"down_blocks.0.attentions.1.transformer_blocks.0.norm3.weight", {320}},
      {"down_blocks.0.temp_attentions.1.transformer_blocks.0.attn2.to_k.weight", {320, 320}},  // frames
      {"down_blocks.0.downsamplers.0.conv.weight", {320, 320, 3, 3}},
      {"down_blocks.1.resnets.0.conv_shortcut.weight", {640, 320, 1, 1}},
      {"down_blocks.2.attentions.1.transformer_blocks.0.ff.net.0.proj.weight", {10240, 1280}},
      // DownBlock3D (last level): no attentions, no downsampler
      {"down_blocks.3.resnets.1.conv2.weight", {1280, 1280, 3, 3}},
      {"down_blocks.3.temp_convs.1.conv3.3.weight", {1280, 1280, 3, 1, 1}},
      // UNetMidBlock3DCrossAttn
      {"mid_block.resnets.1.norm2.weight", {1280}},
      {"mid_block.temp_convs.1.conv2.3.weight", {1280, 1280, 3, 1, 1}},
      {"mid_block.attentions.0.transformer_blocks.0.attn2.to_k.weight", {1280, 1024}},
      {"mid_block.temp_attentions.0.proj_out.weight", {1280, 1280}},
      // UpBlock3D: resnet inputs 1280 (below) + 1280 (skip)
      {"up_blocks.0.resnets.0.conv1.weight", {1280, 2560, 3, 3}},
      {"up_blocks.0.resnets.2.conv_shortcut.weight", {1280, 2560, 1, 1}},
      {"up_blocks.0.upsamplers.0.conv.weight", {1280, 1280, 3, 3}},
      // CrossAttnUpBlock3D
      {"up_blocks.1.resnets.2.conv1.weight", {1280, 1920, 3, 3}},  // 1280 + skip 640
      {"up_blocks.2.resnets.0.conv1.weight", {640, 1920, 3, 3}},   // 1280 + skip 640
      {"up_blocks.2.resnets.2.conv_shortcut.weight", {640, 960, 1, 1}},
      {"up_blocks.3.resnets.0.conv1.weight", {320, 960, 3, 3}},  // 640 + skip 320
      {"up_blocks.3.resnets.2.conv_shortcut.weight", {320, 640, 1, 1}},
      {"up_blocks.3.temp_attentions.2.transformer_blocks.0.attn1.to_out.0.bias", {320}},
      {"up_blocks.3.attentions.2.transformer_blocks.0.attn2.to_k.weight", {320, 1024}},
      // output
      {"conv_norm_out.weight", {320}},
      {"conv_out.weight", {4, 320, 3, 3}},
      {"conv_out.bias", {4}},
  };
  for (const auto& [name, shape] : expected) {
    auto it = shapes.find(name);
    ASSERT_NE(it, shapes.end()) << "missing " << name;
    EXPECT_EQ(it->second, shape) << name;
  }
  for (const char* absent : {"down_blocks.3.downsamplers.0.conv.weight", "down_blocks.3.attentions.0.norm.weight",
                             "up_blocks.0.attentions.0.norm.weight", "up_blocks.3.upsamplers.0.conv.weight",
                             "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.bias",
                             "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_out.1.weight"}) {
    EXPECT_EQ(shapes.count(absent), 0u) << absent;
  }
  // ALGORITHM.md §3: 22 temporal conv layers, 17 temporal transformers (34 temporal attentions).
  EXPECT_EQ(count_containing(shapes, "temp_convs.", ".conv1.2.weight"), 22u);
  EXPECT_EQ(count_containing(shapes, "temp_attentions.", ".proj_in.weight") + shapes.count("transformer_in.proj_in.weight"),
            17u);
  EXPECT_EQ(count_containing(shapes, "attentions.", "attn2.to_k.weight") -
                count_containing(shapes, "temp_attentions.", "attn2.to_k.weight"),
            16u);  // spatial transformers: 3 levels x 2 down + 1 mid + 3 x 3 up
  // Every attention has heads x 64 inner dims = its channels (320/640/1280 -> 5/10/20 heads).
  for (const auto& [name, shape] : shapes) {
    if (name.find("attentions.") != std::string::npos && name.find("attn1.to_q.weight") != std::string::npos) {
      EXPECT_EQ(shape[0], shape[1]) << name;
      EXPECT_EQ(shape[0] % 64, 0) << name;
    }
  }
}

TEST(UNetStructure, PresetSizes) {
  for (const auto& name : {"tiny", "small"}) {
    vi::models::UNet3DConditionModel model(vi::testing::unet_preset(name));
    std::printf("  %s UNet: %lld parameters\n", name, static_cast<long long>(model->num_parameters()));
  }
  EXPECT_EQ(vi::models::UNet3DConditionModel(vi::testing::unet_preset("tiny"))->num_parameters(), 1349636);
}

}  // namespace
