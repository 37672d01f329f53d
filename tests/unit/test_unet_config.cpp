// UNet3D config.json handling and strict weight loading: every supported field read, unsupported
// values refused naming the field, unknown keys warned about; wrong checkpoints (missing, wrong
// shape, wrong dtype, unknown tensor) give one error listing every problem; the random test
// model writer round-trips through the loader.
#include <c10/core/InferenceMode.h>
#include <gtest/gtest.h>
#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>

#include "common/test_util.h"
#include "core/check.h"
#include "core/json_config.h"
#include "core/safetensors.h"
#include "models/temporal_context.h"
#include "testing/test_model_unet.h"
#include "models/unet3d_condition.h"

namespace {

using vi::core::JsonConfig;
using vi::models::UNet3DConfig;

using vi::test::error_of;

using vi::test::log_of;

nlohmann::json tiny_json() { return vi::testing::unet_preset("tiny").to_json(); }

UNet3DConfig parse(const nlohmann::json& j) { return UNet3DConfig::from_json(JsonConfig(j, "unet/config.json")); }

void expect_same(const UNet3DConfig& a, const UNet3DConfig& b) {
  EXPECT_EQ(a.in_channels, b.in_channels);
  EXPECT_EQ(a.out_channels, b.out_channels);
  EXPECT_EQ(a.down_block_types, b.down_block_types);
  EXPECT_EQ(a.up_block_types, b.up_block_types);
  EXPECT_EQ(a.block_out_channels, b.block_out_channels);
  EXPECT_EQ(a.layers_per_block, b.layers_per_block);
  EXPECT_EQ(a.downsample_padding, b.downsample_padding);
  EXPECT_EQ(a.mid_block_scale_factor, b.mid_block_scale_factor);
  EXPECT_EQ(a.act_fn, b.act_fn);
  EXPECT_EQ(a.norm_num_groups, b.norm_num_groups);
  EXPECT_EQ(a.norm_eps, b.norm_eps);
  EXPECT_EQ(a.cross_attention_dim, b.cross_attention_dim);
  EXPECT_EQ(a.attention_head_dim, b.attention_head_dim);
  EXPECT_EQ(a.fps_cond, b.fps_cond);
}

TEST(UNetConfig, PresetsRoundTripThroughConfigJson) {
  for (const auto& name : vi::testing::unet_preset_names()) {
    SCOPED_TRACE(name);
    UNet3DConfig preset = vi::testing::unet_preset(name);
    std::string log = log_of([&] { expect_same(parse(preset.to_json()), preset); });
    EXPECT_EQ(log, "");  // every key written is a key read
  }
  EXPECT_NE(error_of([] { vi::testing::unet_preset("huge"); }).find("huge"), std::string::npos);
}

TEST(UNetConfig, ReadsEveryField) {
  nlohmann::json j = tiny_json();
  j["downsample_padding"] = 0;
  j["mid_block_scale_factor"] = 1.5;
  j["norm_eps"] = 1e-6;
  j["in_channels"] = 5;
  j["out_channels"] = 3;
  j["act_fn"] = "swish";
  UNet3DConfig c = parse(j);
  EXPECT_EQ(c.downsample_padding, 0);
  EXPECT_DOUBLE_EQ(c.mid_block_scale_factor, 1.5);
  EXPECT_DOUBLE_EQ(c.norm_eps, 1e-6);
  EXPECT_EQ(c.in_channels, 5);
  EXPECT_EQ(c.out_channels, 3);
  EXPECT_EQ(c.act_fn, "swish");
  EXPECT_EQ(c.block_out_channels, (std::vector<int64_t>{32, 64}));
  EXPECT_EQ(c.attention_head_dim, 8);
  EXPECT_EQ(c.cross_attention_dim, 32);
}

TEST(UNetConfig, FpCondDefaultsFromTheClassName) {
  nlohmann::json j = tiny_json();
  j.erase("fps_cond");
  j["_class_name"] = "UNet3DConditionModel";
  EXPECT_FALSE(parse(j).fps_cond);
  j["_class_name"] = "UNet3DVideoCrafterConditionModel";
  EXPECT_TRUE(parse(j).fps_cond);
  j["fps_cond"] = false;
  EXPECT_FALSE(parse(j).fps_cond);
}

TEST(UNetConfig, UnsupportedValuesAreRefusedNamingTheField) {
  struct Case {
    const char* key;
    nlohmann::json value;
  };
  const std::vector<Case> cases = {
      {"down_block_types", {"CrossAttnDownBlock3D", "DownBlockMotion"}},
      {"up_block_types", {"UpBlock3D", "CrossAttnUpBlockSpatioTemporal"}},
      {"up_block_types", {"UpBlock3D"}},  // wrong length
      {"act_fn", "gelu"},
      {"num_attention_heads", 8},
      {"attention_head_dim", {8, 8}},
      {"time_cond_proj_dim", 16},
      {"norm_num_groups", nullptr},
      {"norm_num_groups", 7},  // does not divide 32 and 64
      {"block_out_channels", {32, 60}},
      {"layers_per_block", 0},
      {"layers_per_block", "two"},
      {"cross_attention_dim", 0},
      {"attention_head_dim", 128},  // more than the 32 channels of level 0
  };
  for (const auto& c : cases) {
    nlohmann::json j = tiny_json();
    j[c.key] = c.value;
    const std::string error = error_of([&] { parse(j); });
    SCOPED_TRACE(std::string(c.key) + " = " + c.value.dump());
    EXPECT_NE(error, "");
    EXPECT_NE(error.find(c.key), std::string::npos) << error;
    EXPECT_NE(error.find("unet/config.json"), std::string::npos) << error;
  }
}

TEST(UNetConfig, UnknownKeysAreWarnedAboutNotRefused) {
  nlohmann::json j = tiny_json();
  j["use_fancy_attention"] = true;
  j["_name_or_path"] = "somewhere";  // diffusers' private keys are not reported
  UNet3DConfig c;
  const std::string log = log_of([&] { c = parse(j); });
  EXPECT_NE(log.find("use_fancy_attention"), std::string::npos) << log;
  EXPECT_EQ(log.find("_name_or_path"), std::string::npos) << log;
  EXPECT_EQ(c.block_out_channels, (std::vector<int64_t>{32, 64}));
}

// Loads every tensor of a checkpoint into memory (copies, so the file can be rewritten).
std::vector<std::pair<std::string, at::Tensor>> read_all(const std::string& path) {
  vi::core::SafetensorsFile file(path);
  std::vector<std::pair<std::string, at::Tensor>> out;
  for (const auto& info : file.tensors()) out.emplace_back(info.name, file.tensor(info.name).clone());
  return out;
}

TEST(UNetLoad, WrongWeightsGiveOneErrorListingEveryProblem) {
  const std::string dir = vi::test::make_temp_dir("unet-doctored");
  vi::testing::write_test_unet(dir, "tiny", 3, at::kFloat);
  const std::string weights = dir + "/diffusion_pytorch_model.safetensors";
  std::vector<std::pair<std::string, at::Tensor>> doctored;
  for (auto& [name, t] : read_all(weights)) {
    if (name == "mid_block.temp_convs.1.conv4.3.bias") continue;                       // missing
    if (name == "up_blocks.1.attentions.0.proj_in.weight") t = t.narrow(1, 0, 16).clone();  // wrong shape
    if (name == "conv_norm_out.weight") t = t.to(at::kLong);                            // wrong dtype
    doctored.emplace_back(name, t);
  }
  doctored.emplace_back("down_blocks.0.attentions.0.pos_embed.weight", at::zeros({4}));  // unknown
  vi::core::save_safetensors(weights, doctored);
  const std::string error = error_of([&] { vi::models::load_unet3d(dir); });
  std::printf("%s\n", error.c_str());
  EXPECT_NE(error.find("4 problems"), std::string::npos) << error;
  for (const char* name : {"mid_block.temp_convs.1.conv4.3.bias", "up_blocks.1.attentions.0.proj_in.weight",
                           "conv_norm_out.weight", "down_blocks.0.attentions.0.pos_embed.weight"}) {
    EXPECT_NE(error.find(name), std::string::npos) << name;
  }
  EXPECT_NE(error.find("got [32, 16], expected [32, 32]"), std::string::npos);
  EXPECT_NE(error.find("I64"), std::string::npos);
  std::filesystem::remove_all(dir);
}

TEST(UNetLoad, TestModelRoundTripsInEveryDtype) {
  const std::string dir = vi::test::make_temp_dir("unet-roundtrip");
  auto reference = vi::testing::make_random_unet("tiny", 11);
  at::manual_seed(0);
  at::Tensor sample = at::randn({2, 4, 4, 8, 8}), text = at::randn({2, 7, 32});
  at::Tensor expected;
  {
    c10::InferenceMode guard;
    vi::models::PlainTemporalContext ctx;
    expected = reference->forward(sample, 700.0, text, 24, ctx);
  }
  for (auto dtype : {at::kFloat, at::kBFloat16, at::kHalf}) {
    SCOPED_TRACE(c10::toString(dtype));
    vi::testing::write_test_unet(dir, "tiny", 11, dtype);
    // The config is the preset's, and the file holds every parameter in `dtype`.
    expect_same(UNet3DConfig::load(dir + "/config.json"), vi::testing::unet_preset("tiny"));
    vi::core::SafetensorsFile file(dir + "/diffusion_pytorch_model.safetensors");
    EXPECT_EQ(file.tensors().size(), reference->parameters().size());
    for (const auto& info : file.tensors()) ASSERT_EQ(vi::core::to_scalar_type(info.dtype), dtype) << info.name;
    // Loaded back as fp32: the same model up to the rounding of the stored weights.
    auto loaded = vi::models::load_unet3d(dir, at::kFloat);
    c10::InferenceMode guard;
    vi::models::PlainTemporalContext ctx;
    at::Tensor out = loaded->forward(sample, 700.0, text, 24, ctx);
    const double rel = vi::test::rel_error(out, expected);
    const double tolerance = dtype == at::kFloat ? 0.0 : dtype == at::kHalf ? 2e-2 : 1e-1;
    std::printf("  stored as %s, run in fp32: rel %.3e vs the in-memory model (tolerance %.0e)\n",
                c10::toString(dtype), rel, tolerance);
    EXPECT_LE(rel, tolerance);
  }
  std::filesystem::remove_all(dir);
}

TEST(UNetLoad, UnsupportedDtypesAreRefusedAtLoad) {
  const std::string dir = vi::test::make_temp_dir("unet-dtype");
  vi::testing::write_test_unet(dir, "tiny", 5, at::kFloat);
  EXPECT_NE(error_of([&] { vi::models::load_unet3d(dir, at::kDouble); }).find("Double"), std::string::npos);
  EXPECT_EQ(vi::models::load_unet3d(dir, at::kBFloat16)->dtype(), at::kBFloat16);
  EXPECT_EQ(vi::models::load_unet3d(dir, at::kHalf)->dtype(), at::kHalf);  // runs on the CPU too (LibTorch 2.x)
  std::filesystem::remove_all(dir);
}

TEST(UNetLoad, UNetSubfolderIsFound) {
  const std::string dir = vi::test::make_temp_dir("unet-subfolder");
  vi::testing::write_test_unet(dir + "/unet", "tiny", 5, at::kFloat);
  auto model = vi::models::load_unet3d(dir);
  EXPECT_EQ(model->config().block_out_channels, (std::vector<int64_t>{32, 64}));
  EXPECT_NE(error_of([&] { vi::models::load_unet3d(dir + "/nowhere"); }).find("config.json"), std::string::npos);
  std::filesystem::remove_all(dir);
}

}  // namespace
