// AutoencoderKL decoder: parity with the reference tiny VAE's goldens (scaled input, decoder
// output, frames in [0, 1], uint8 export), chunked decoding, config handling, loading, writer.
#include <gtest/gtest.h>

#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>
#include <nlohmann/json.hpp>

#include <cstdio>
#include <filesystem>
#include <string>

#include "common/test_util.h"
#include "core/check.h"
#include "core/json_config.h"
#include "core/safetensors.h"
#include "models/autoencoder_kl.h"
#include "testing/test_model_text_vae.h"

namespace vi {
namespace {

// README: unit goldens rel <= 1e-5; uint8 frames |diff| <= 1 on <= 0.1 % of values.
constexpr double kTolerance = 1e-5;
constexpr double kU8Fraction = 1e-3;

std::string tiny_vae_dir() { return test::tiny_model_dir() + "/vae"; }
const char* kGolden = "vae_decode.safetensors";

double report(const char* what, const at::Tensor& out, const at::Tensor& ref, double tolerance = kTolerance) {
  const double rel = test::rel_error(out, ref);
  std::printf("%-44s rel %.3e  max-abs %.3e  (tolerance rel %.0e)\n", what, rel, test::max_abs_error(out, ref),
              tolerance);
  return rel;
}

// Checks uint8 frames against the reference's: |diff| <= 1 everywhere, != 0 on <= 0.1 %.
void expect_u8_close(const at::Tensor& out, const at::Tensor& ref, const char* what) {
  ASSERT_EQ(out.sizes(), ref.sizes());
  ASSERT_EQ(out.scalar_type(), at::kByte);
  at::Tensor diff = (out.to(at::kInt) - ref.to(at::kInt)).abs();
  const int64_t max_diff = diff.max().item<int64_t>();
  const double fraction = diff.ne(0).sum().item<double>() / static_cast<double>(diff.numel());
  std::printf("%-44s max |diff| %lld, differing %.4f %% of %lld  (tolerance <= 1 on <= %.1f %%)\n", what,
              static_cast<long long>(max_diff), 100 * fraction, static_cast<long long>(diff.numel()),
              100 * kU8Fraction);
  EXPECT_LE(max_diff, 1);
  EXPECT_LE(fraction, kU8Fraction);
}

TEST(Vae, MatchesReferenceDecode) {
  c10::InferenceMode guard;
  models::AutoencoderKL vae = models::load_vae(tiny_vae_dir(), at::kFloat, at::kCPU);
  at::Tensor latents = test::golden(kGolden, "latents");  // [1, 4, 8, 8, 8]
  at::Tensor scaled = vae->scale_latents(latents);        // [8, 4, 8, 8]
  EXPECT_LE(report("vae_input [8, 4, 8, 8]", scaled, test::golden(kGolden, "vae_input")), kTolerance);

  at::Tensor images = vae->decode_latents(latents, 1);  // [1, 3, 8, 64, 64], one frame per call as the reference
  ASSERT_EQ(images.sizes().vec(), (std::vector<int64_t>{1, 3, 8, 64, 64}));
  at::Tensor sample = images[0].permute({1, 0, 2, 3});  // [8, 3, 64, 64]
  EXPECT_LE(report("vae_sample [8, 3, 64, 64]", sample, test::golden(kGolden, "vae_sample")), kTolerance);

  at::Tensor frames = models::postprocess_frames(images);  // [1, 8, 64, 64, 3]
  EXPECT_LE(report("frames_float [1, 8, 64, 64, 3]", frames, test::golden(kGolden, "frames_float")), kTolerance);
  expect_u8_close(models::to_uint8_frames(images), test::golden(kGolden, "frames_uint8"), "frames_uint8 [8, 64, 64, 3]");
}

TEST(Vae, Uint8ExportIsExactOnTheReferenceImages) {
  // The export rule alone, fed the reference's own decoder output: bit-exact.
  c10::InferenceMode guard;
  at::Tensor sample = test::golden(kGolden, "vae_sample");        // [8, 3, 64, 64]
  at::Tensor images = sample.permute({1, 0, 2, 3}).unsqueeze(0);  // [1, 3, 8, 64, 64]
  at::Tensor frames = models::postprocess_frames(images);
  EXPECT_TRUE(at::equal(frames, test::golden(kGolden, "frames_float")));
  at::Tensor u8 = models::to_uint8_frames(images);
  at::Tensor ref = test::golden(kGolden, "frames_uint8");
  const int64_t differing = u8.ne(ref).sum().item<int64_t>();
  std::printf("uint8 export of the reference images: %lld of %lld values differ (expected 0)\n",
              static_cast<long long>(differing), static_cast<long long>(ref.numel()));
  EXPECT_EQ(differing, 0);
  // Truncation, not rounding: 0.999 -> fp16 0.999 -> 254.7 -> 254.
  at::Tensor one = at::full({1, 3, 1, 1, 1}, 2 * 0.999 - 1);
  EXPECT_EQ(models::to_uint8_frames(one)[0][0][0][0].item<int64_t>(), 254);
}

TEST(Vae, ChunkedDecodingAgrees) {
  c10::InferenceMode guard;
  models::AutoencoderKL vae = models::load_vae(tiny_vae_dir(), at::kFloat, at::kCPU);
  at::Tensor latents = test::golden(kGolden, "latents");
  at::Tensor one = vae->decode_latents(latents, 1);
  for (int64_t chunk : {3, 8, 0, 100}) {
    at::Tensor out = vae->decode_latents(latents, chunk);
    const std::string what = "chunk " + std::to_string(chunk) + " vs chunk 1";
    EXPECT_LE(report(what.c_str(), out, one), kTolerance);
  }
}

TEST(Vae, BatchAndFrameOrder) {
  // B = 2: images[b, :, f] is the decode of latents[b, :, f] alone.
  c10::InferenceMode guard;
  models::AutoencoderKL vae = models::load_vae(tiny_vae_dir(), at::kFloat, at::kCPU);
  at::Tensor latents = at::randn({2, 4, 3, 4, 6});
  at::Tensor images = vae->decode_latents(latents, 4);
  ASSERT_EQ(images.sizes().vec(), (std::vector<int64_t>{2, 3, 3, 32, 48}));
  for (int64_t b = 0; b < 2; ++b) {
    for (int64_t f = 0; f < 3; ++f) {
      at::Tensor alone = vae->decode_latents(latents.slice(0, b, b + 1).slice(2, f, f + 1), 1);  // [1, 3, 1, 32, 48]
      EXPECT_LE(test::rel_error(images.slice(0, b, b + 1).slice(2, f, f + 1), alone), kTolerance) << b << " " << f;
    }
  }
  EXPECT_EQ(models::to_uint8_frames(images).sizes().vec(), (std::vector<int64_t>{6, 32, 48, 3}));
  EXPECT_THROW(vae->decode_latents(at::zeros({1, 3, 2, 4, 4}), 1), Error);  // 3 latent channels
  EXPECT_THROW(vae->decode_latents(at::zeros({1, 4, 4, 4}), 1), Error);     // no frame axis
}

nlohmann::json tiny_config() { return nlohmann::json::parse(test::read_file(tiny_vae_dir() + "/config.json")); }

std::string config_error(const nlohmann::json& j) {
  try {
    models::AutoencoderKLConfig::from_json(core::JsonConfig(j, "vae/config.json"));
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(Vae, ConfigReadsFieldsAndRefusesUnsupportedValues) {
  core::JsonConfig json(tiny_config(), "config.json");
  models::AutoencoderKLConfig c = models::AutoencoderKLConfig::from_json(json);
  EXPECT_EQ(c.block_out_channels, (std::vector<int64_t>{16, 16, 32, 32}));
  EXPECT_EQ(c.layers_per_block, 1);
  EXPECT_EQ(c.latent_channels, 4);
  EXPECT_EQ(c.norm_num_groups, 8);
  EXPECT_DOUBLE_EQ(c.scaling_factor, 0.18215);
  EXPECT_TRUE(json.unread_keys().empty()) << "the tiny config's keys are all known";

  nlohmann::json j = tiny_config();
  j["future_field"] = 1;
  core::JsonConfig with_extra(j, "config.json");
  models::AutoencoderKLConfig::from_json(with_extra);
  EXPECT_EQ(with_extra.unread_keys(), (std::vector<std::string>{"future_field"}));

  struct Case {
    const char* key;
    nlohmann::json value;
  };
  for (const Case& bad : {Case{"act_fn", "relu"}, Case{"up_block_types", {"UpDecoderBlock2D", "AttnUpDecoderBlock2D",
                                                                          "UpDecoderBlock2D", "UpDecoderBlock2D"}},
                          Case{"up_block_types", {"UpDecoderBlock2D"}}, Case{"block_out_channels", {16, 16, 32, 36}},
                          Case{"norm_num_groups", 0}, Case{"scaling_factor", -1.0}, Case{"layers_per_block", 0}}) {
    j = tiny_config();
    j[bad.key] = bad.value;
    const std::string error = config_error(j);
    EXPECT_NE(error.find(std::string("'") + bad.key + "'"), std::string::npos) << bad.key << ": " << error;
  }
}

TEST(Vae, LoadingIgnoresTheEncoderButNothingElse) {
  core::WeightStore store = core::WeightStore::open(tiny_vae_dir());
  ASSERT_NE(store.find("encoder.conv_in.weight"), nullptr) << "the tiny file holds the encoder too";
  auto write_variant = [&](const std::string& dir, const std::string& drop, bool extra) {
    std::filesystem::copy_file(tiny_vae_dir() + "/config.json", dir + "/config.json");
    std::vector<std::pair<std::string, at::Tensor>> tensors;
    for (const auto& name : store.names()) {
      if (name != drop) tensors.emplace_back(name, store.get(name));
    }
    if (extra) tensors.emplace_back("decoder.mid_block.attentions.0.proj_attn.weight", at::zeros({32, 32}));
    core::save_safetensors(dir + "/diffusion_pytorch_model.safetensors", tensors);
  };
  const std::string missing = test::make_temp_dir("vae_missing");
  write_variant(missing, "decoder.up_blocks.2.resnets.0.conv_shortcut.weight", false);
  try {
    models::load_vae(missing, at::kFloat, at::kCPU);
    ADD_FAILURE() << "a missing decoder tensor must be an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("decoder.up_blocks.2.resnets.0.conv_shortcut.weight"), std::string::npos)
        << e.what();
  }
  const std::string unexpected = test::make_temp_dir("vae_unexpected");
  write_variant(unexpected, "", true);
  try {
    models::load_vae(unexpected, at::kFloat, at::kCPU);
    ADD_FAILURE() << "an unknown decoder tensor (old attention names) must be an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("proj_attn"), std::string::npos) << e.what();
  }
  std::filesystem::remove_all(missing);
  std::filesystem::remove_all(unexpected);
}

TEST(Vae, WrittenTestModelsLoadBackAndRun) {
  for (const char* preset : {"tiny", "small"}) {
    for (at::ScalarType dtype : {at::kFloat, at::kHalf}) {
      const std::string dir = test::make_temp_dir("vae_writer");
      vi::testing::write_test_vae(dir, preset, 11, dtype);
      core::WeightStore store = core::WeightStore::open(dir);
      for (const auto& name : store.names()) {
        EXPECT_TRUE(name.rfind("decoder.", 0) == 0 || name.rfind("post_quant_conv.", 0) == 0) << name;
      }
      EXPECT_EQ(store.find("decoder.mid_block.attentions.0.to_q.weight")->dtype, core::from_scalar_type(dtype));
      c10::InferenceMode guard;
      models::AutoencoderKL vae = models::load_vae(dir, at::kFloat, at::kCPU);
      const models::AutoencoderKLConfig expected = vi::testing::vae_preset(preset);
      EXPECT_EQ(vae->config().block_out_channels, expected.block_out_channels);
      for (const auto& p : vae->named_parameters()) EXPECT_GT(p.value().std().item<double>(), 0.0) << p.key();
      at::Tensor images = vae->decode_latents(at::randn({1, 4, 2, 4, 4}), 1);
      ASSERT_EQ(images.sizes().vec(), (std::vector<int64_t>{1, 3, 2, 32, 32}));
      EXPECT_TRUE(at::isfinite(images).all().item<bool>());
      std::printf("%s %s: image std %.3f\n", preset, c10::toString(dtype), images.std().item<double>());
      EXPECT_GT(images.std().item<double>(), 1e-2);
      std::filesystem::remove_all(dir);
    }
  }
  EXPECT_THROW(vi::testing::vae_preset("huge"), Error);
}

TEST(Vae, VideoCrafter2PresetHasTheRealStructure) {
  models::AutoencoderKLConfig c = vi::testing::vae_preset("videocrafter2");
  EXPECT_EQ(c.block_out_channels, (std::vector<int64_t>{128, 256, 512, 512}));
  EXPECT_EQ(c.layers_per_block, 2);
  EXPECT_EQ(c.norm_num_groups, 32);
  EXPECT_DOUBLE_EQ(c.scaling_factor, 0.18215);
  core::JsonConfig json(nlohmann::json::parse(vi::testing::vae_config_json(c)), "config.json");
  models::AutoencoderKLConfig back = models::AutoencoderKLConfig::from_json(json);
  EXPECT_EQ(back.block_out_channels, c.block_out_channels);
  EXPECT_TRUE(json.unread_keys().empty());
  // The decoder of the real VAE: 49,490,179 parameters + post_quant_conv (diffusers: 83,653,863 with the
  // encoder and quant_conv).
  models::AutoencoderKL vae(c);
  int64_t count = 0;
  for (const auto& p : vae->parameters()) count += p.numel();
  std::printf("videocrafter2 VAE decoder + post_quant_conv: %lld parameters\n", static_cast<long long>(count));
  EXPECT_EQ(count, 49490179 + 20);
}

}  // namespace
}  // namespace vi
