// The video-infinity command end to end under mpiexec -n 2 on a random tiny model made with
// make-test-model: the MP4 (checked by ffprobe), the sidecar, PNGs equal to the VAE decode of
// the saved latents, the reference's config format, and one test per bad input: exit code,
// one clear message, no output file left.
#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>

#include "common/test_util.h"
#include "core/safetensors.h"
#include "models/autoencoder_kl.h"
#include "video_infinity/communicator.h"

namespace fs = std::filesystem;
using vi::test::run_command;

namespace {

class GenerateTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = vi::test::make_temp_dir("generate");
    model_ = dir_ + "/model";
    auto r = run_command(vi::test::binary_path() + " make-test-model --preset tiny --seed 3 --out " + model_);
    ASSERT_EQ(r.status, 0) << r.output;
  }
  static void TearDownTestSuite() { fs::remove_all(dir_); }

  static std::string launcher(int ranks) {
    return vi::parallel::built_with_mpi() ? vi::test::mpiexec(ranks) : std::string();
  }
  // Small settings that run in about a second.
  static std::string base_args() {
    return " --model " + model_ + " --prompt 'a red fox' --height 64 --width 64 --steps 3 --attn-padding 2"
           " --attn-top-k 4 --conv-padding 2 --quiet";
  }
  static int ranks() { return vi::parallel::built_with_mpi() ? 2 : 1; }

  // Runs with extra args; expects failure with `needle` in the output and no file at `output`.
  void expect_refused(const std::string& args, const std::string& needle, const std::string& output) {
    auto r = run_command(launcher(ranks()) + vi::test::binary_path() + args);
    EXPECT_NE(r.status, 0) << args << "\n" << r.output;
    EXPECT_NE(r.output.find(needle), std::string::npos) << "expected '" << needle << "' for " << args << "\n" << r.output;
    EXPECT_FALSE(fs::exists(output)) << output;
    // No temporary leftovers beside the output either.
    if (fs::is_directory(fs::path(output).parent_path())) {
      for (const auto& e : fs::directory_iterator(fs::path(output).parent_path())) {
        EXPECT_EQ(e.path().filename().string().find(fs::path(output).filename().string() + "."), std::string::npos)
            << "leftover " << e.path();
      }
    }
  }

  static std::string dir_, model_;
};
std::string GenerateTest::dir_;
std::string GenerateTest::model_;

TEST_F(GenerateTest, WritesMp4SidecarFramesAndLatents) {
  if (!fs::exists("/usr/bin/ffprobe")) GTEST_SKIP() << "ffprobe missing";
  const std::string out = dir_ + "/fox.mp4", frames = dir_ + "/fox_frames", latents = dir_ + "/fox.safetensors";
  // With a live preview after every step: it must leave the video itself as it is (the PNGs below).
  auto r = run_command(launcher(ranks()) + vi::test::binary_path() + base_args() + " --frames 16 --export-fps 12 --output " +
                       out + " --save-frames " + frames + " --save-latents " + latents + " --preview-every 1");
  ASSERT_EQ(r.status, 0) << r.output;
  auto probe = run_command("ffprobe -v error -count_frames -select_streams v:0 -show_entries "
                           "stream=nb_read_frames,width,height,avg_frame_rate -of json " + out);
  ASSERT_EQ(probe.status, 0) << probe.output;
  auto info = nlohmann::json::parse(probe.output)["streams"][0];
  EXPECT_EQ(info["nb_read_frames"], "16");
  EXPECT_EQ(info["width"], 64);
  EXPECT_EQ(info["height"], 64);
  EXPECT_EQ(info["avg_frame_rate"], "12/1");
  std::ifstream sidecar_in(out + ".json");
  auto sidecar = nlohmann::json::parse(sidecar_in);
  EXPECT_EQ(sidecar["settings"]["frames"], 16);
  EXPECT_EQ(sidecar["seed"], 123);
  EXPECT_TRUE(sidecar["times_s"].contains("denoise"));
  if (ranks() > 1) EXPECT_GT(sidecar["bytes_sent_rank0"]["per_unet_call"].get<int64_t>(), 0);
  // The last preview stays: every frame, at half the size; the sidecar has its map and costs.
  EXPECT_EQ(sidecar["settings"]["preview_every"], 1);
  ASSERT_TRUE(sidecar.contains("preview")) << sidecar.dump(2);
  EXPECT_EQ(sidecar["preview"]["previews"], 3);
  EXPECT_EQ(sidecar["preview"]["last_written_step"], 3);
  EXPECT_EQ(sidecar["preview"]["failed"], 0);
  EXPECT_EQ(sidecar["preview"]["map"]["weight"].size(), 4u);
  probe = run_command("ffprobe -v error -count_frames -select_streams v:0 -show_entries "
                      "stream=nb_read_frames,width,height,avg_frame_rate -of json " + out + ".preview.mp4");
  ASSERT_EQ(probe.status, 0) << probe.output;
  info = nlohmann::json::parse(probe.output)["streams"][0];
  EXPECT_EQ(info["nb_read_frames"], "16");
  EXPECT_EQ(info["width"], 32);
  EXPECT_EQ(info["height"], 32);
  EXPECT_EQ(info["avg_frame_rate"], "12/1");
  // The seam report: one boundary per pair of neighbouring clips (one clip per rank, no --loop).
  const auto& seams = sidecar["seam_report"];
  EXPECT_EQ(seams["threshold"], 3.0);
  EXPECT_EQ(seams["boundaries"], ranks() - 1);
  EXPECT_EQ(seams["seams"].size(), static_cast<size_t>(ranks() - 1));
  EXPECT_EQ(seams["inside_pairs"], 16 - ranks());
  for (const auto& s : seams["seams"]) {
    EXPECT_EQ(s["frame"], 16 / ranks() * (s["to_clip"].get<int>()));
    EXPECT_GE(s["pixel_mad"].get<double>(), 0.0);
    EXPECT_TRUE(s["latent_ratio"].is_number()) << s;
  }

  // The PNGs are exactly the VAE decode of the saved latents.
  at::Tensor z = vi::core::SafetensorsFile(latents).tensor("latents").clone();
  ASSERT_EQ(z.sizes(), (std::vector<int64_t>{1, 4, 16, 8, 8}));
  c10::InferenceMode guard;
  auto vae = vi::models::load_vae(model_ + "/vae", at::kFloat, c10::kCPU);
  at::Tensor expected = vi::models::to_uint8_frames(vae->decode_latents(z, 8));  // [16, 64, 64, 3]
  auto raw = run_command("ffmpeg -v error -i " + frames + "/frame_%06d.png -f rawvideo -pix_fmt rgb24 - > " + dir_ +
                         "/frames.rgb");
  ASSERT_EQ(raw.status, 0) << raw.output;
  std::string bytes = vi::test::read_file(dir_ + "/frames.rgb");
  ASSERT_EQ(bytes.size(), static_cast<size_t>(expected.numel()));
  at::Tensor png = at::from_blob(bytes.data(), {16, 64, 64, 3}, at::kByte).clone();
  EXPECT_TRUE(at::equal(png, expected)) << "max diff " << (png.to(at::kInt) - expected.to(at::kInt)).abs().max();
}

TEST_F(GenerateTest, ThePapersFrameCountOnEightRanks) {
  // 2,300 frames on 8 ranks: 287.5 frames per clip, so 4 clips of 288 and 4 of 287 (tiny size).
  if (!vi::parallel::built_with_mpi()) GTEST_SKIP() << "needs mpiexec";
  const std::string out = dir_ + "/long.mp4", latents = dir_ + "/long.safetensors";
  auto r = run_command(vi::test::mpiexec(8) + vi::test::binary_path() + " --model " + model_ +
                       " --prompt 'a long walk' --height 32 --width 32 --steps 2 --scheduler ddim --frames 2300"
                       " --vae-chunk 64 --output " + out + " --save-latents " + latents);
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("2300 frames = 4 clips x 288 + 4 clips x 287 frames on 8 ranks"), std::string::npos)
      << r.output;
  at::Tensor z = vi::core::SafetensorsFile(latents).tensor("latents");
  EXPECT_EQ(z.sizes(), (std::vector<int64_t>{1, 4, 2300, 4, 4}));
  EXPECT_TRUE(z.isfinite().all().item<bool>());
  // No clip is padding: every frame's latent has spread (a zero frame would have none).
  EXPECT_GT(z.std({1, 3, 4}).min().item<double>(), 0.0);
  std::ifstream sidecar_in(out + ".json");
  auto sidecar = nlohmann::json::parse(sidecar_in);
  EXPECT_EQ(sidecar["settings"]["frames"], 2300);
  EXPECT_EQ(sidecar["settings"]["frames_per_clip"], 288);
  if (fs::exists("/usr/bin/ffprobe")) {
    auto probe = run_command("ffprobe -v error -count_frames -select_streams v:0 -show_entries stream=nb_read_frames "
                             "-of csv=p=0 " + out);
    ASSERT_EQ(probe.status, 0) << probe.output;
    EXPECT_EQ(std::stoi(probe.output), 2300);
  }
}

TEST_F(GenerateTest, ReferenceConfigRunsWithOnlyTheModelChanged) {
  // configs/reference_example.json, with the tiny model and sizes a CPU test can afford given as
  // flags (flags override the file).
  const std::string out = dir_ + "/ref.mp4";
  auto r = run_command(launcher(ranks()) + vi::test::binary_path() + " --config " + vi::test::source_dir() +
                       "/configs/reference_example.json --model " + model_ +
                       " --height 64 --width 64 --steps 2 --frames-per-clip 8 --attn-padding 2 --output " + out +
                       " --quiet");
  EXPECT_EQ(r.status, 0) << r.output;
  EXPECT_TRUE(fs::exists(out));
}

TEST_F(GenerateTest, BadInputIsRefusedClearly) {
  const std::string out = dir_ + "/bad/out.mp4";
  fs::create_directories(dir_ + "/bad");
  const std::string bin = " --output " + out;
  const std::string ok = base_args() + " --frames 16" + bin;
  // Model problems.
  expect_refused(" --model " + dir_ + "/nope --prompt x --frames 16" + bin, "does not exist", out);
  fs::create_directories(dir_ + "/partial");
  fs::copy(model_, dir_ + "/partial", fs::copy_options::recursive | fs::copy_options::overwrite_existing);
  fs::remove_all(dir_ + "/partial/vae");
  expect_refused(" --model " + dir_ + "/partial --prompt x --frames 16 --height 64 --width 64 --attn-padding 2" + bin,
                 "vae/config.json", out);
  // Truncated weights.
  fs::copy(model_ + "/vae", dir_ + "/partial/vae", fs::copy_options::recursive | fs::copy_options::overwrite_existing);
  const std::string weights = dir_ + "/partial/unet/diffusion_pytorch_model.safetensors";
  fs::resize_file(weights, fs::file_size(weights) / 2);
  expect_refused(" --model " + dir_ + "/partial --prompt x --frames 16 --height 64 --width 64 --attn-padding 2" + bin,
                 "diffusion_pytorch_model.safetensors", out);
  // A tensor of the wrong shape in an otherwise good UNet.
  fs::create_directories(dir_ + "/wrongshape");
  fs::copy_file(model_ + "/unet/config.json", dir_ + "/wrongshape/config.json", fs::copy_options::overwrite_existing);
  {
    vi::core::SafetensorsFile good(model_ + "/unet/diffusion_pytorch_model.safetensors");
    std::vector<std::pair<std::string, at::Tensor>> tensors;
    for (const auto& info : good.tensors()) {
      at::Tensor t = good.tensor(info.name);
      if (info.name == "conv_in.weight") t = at::zeros({t.size(0), t.size(1) + 1, 3, 3});
      tensors.emplace_back(info.name, t);
    }
    vi::core::save_safetensors(dir_ + "/wrongshape/diffusion_pytorch_model.safetensors", tensors);
  }
  expect_refused(base_args() + " --frames 16 --unet " + dir_ + "/wrongshape" + bin,
                 "tensor 'conv_in.weight': got [32, 5, 3, 3], expected [32, 4, 3, 3]", out);
  // Config files.
  vi::test::write_file(dir_ + "/broken.json", "{\"steps\": 3,,}");
  expect_refused(ok + " --config " + dir_ + "/broken.json", "invalid JSON", out);
  vi::test::write_file(dir_ + "/types.json", "{\"steps\": \"three\"}");
  expect_refused(ok + " --config " + dir_ + "/types.json", "key 'steps': expected an integer", out);
  // Settings.
  expect_refused(base_args() + " --frames 15 --clips 2 --frames-per-clip 7" + bin,
                 "--frames 15 in 2 clips makes clips of 8 frames at most, but --frames-per-clip is 7", out);
  expect_refused(base_args() + " --frames 2 --clips 2" + bin, "shorter than the", out);
  expect_refused(base_args() + " --frames 16 --height 60" + bin, "--height must be a positive multiple of 8", out);
  expect_refused(base_args() + " --frames 16 --width 0" + bin, "--width must be a positive multiple of 8", out);
  expect_refused(base_args() + " --frames 16 --steps 0" + bin, "--steps must be at least 1", out);
  expect_refused(base_args() + " --frames 16 --guidance -2" + bin, "--guidance must be >= 0", out);
  expect_refused(base_args() + " --frames 16 --scheduler euler" + bin, "unknown scheduler 'euler'", out);
  expect_refused(base_args() + " --frames 16 --output /nonexistent-dir/x.mp4", "--output: directory '/nonexistent-dir'",
                 "/nonexistent-dir/x.mp4");
  vi::core::save_safetensors(dir_ + "/wrong_latents.safetensors", {{"latents", at::zeros({1, 4, 8, 8, 8})}});
  expect_refused(base_args() + " --frames 16 --init-latents " + dir_ + "/wrong_latents.safetensors" + bin,
                 "'latents' has shape [1, 4, 8, 8, 8], expected [1, 4, 16, 8, 8]", out);
  expect_refused(" --model " + model_ + " --frames 16 --height 64 --width 64 --attn-padding 2" + bin, "no prompt given",
                 out);
}

TEST_F(GenerateTest, InitLatentsGiveTheSameVideo) {
  // Saved latents fed back as the initial latents with 0 noise change: same settings give the
  // same result as the seed that made them (initial latents are what the seed draws).
  const std::string a = dir_ + "/a.safetensors", b = dir_ + "/b.safetensors";
  vi::core::save_safetensors(dir_ + "/init.safetensors", {{"latents", at::randn({1, 4, 16, 8, 8})}});
  for (const auto& out : {a, b}) {
    auto r = run_command(launcher(ranks()) + vi::test::binary_path() + base_args() + " --frames 16 --scheduler ddim"
                         " --init-latents " + dir_ + "/init.safetensors --save-latents " + out + " --output " + out + ".mp4");
    ASSERT_EQ(r.status, 0) << r.output;
  }
  EXPECT_TRUE(at::equal(vi::core::SafetensorsFile(a).tensor("latents"), vi::core::SafetensorsFile(b).tensor("latents")));
}

TEST_F(GenerateTest, TokenizeNeedsOnlyTheTokenizer) {
  auto r = run_command(vi::test::binary_path() + " tokenize --model " + vi::test::reference_dir() +
                       "/clip-tokenizer --prompt 'a photo of a cat'");
  ASSERT_EQ(r.status, 0) << r.output;
  auto j = nlohmann::json::parse(r.output.substr(r.output.find('{')));
  std::vector<int64_t> ids = j["ids"];
  EXPECT_EQ(std::vector<int64_t>(ids.begin(), ids.begin() + 7),
            (std::vector<int64_t>{49406, 320, 1125, 539, 320, 2368, 49407}));
  EXPECT_FALSE(j["truncated"].get<bool>());
  std::string long_prompt;
  for (int i = 0; i < 100; ++i) long_prompt += "cat ";
  auto t = run_command(vi::test::binary_path() + " tokenize --model " + vi::test::reference_dir() +
                       "/clip-tokenizer --prompt '" + long_prompt + "'");
  EXPECT_EQ(t.status, 0);
  EXPECT_NE(t.output.find("truncated"), std::string::npos);
  EXPECT_NE(t.output.find("\"truncated\":true"), std::string::npos) << t.output;
}

}  // namespace
