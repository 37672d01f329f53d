// The live preview's parts (pipeline/preview.h): the least-squares latent-to-RGB fit (a planted
// map recovered exactly; on the tiny model's VAE no worse than the best constant colour), the
// x0 formula against DDIM's own predicted original sample, the projection and the upsampling,
// and the writer in a world of one (latest wins, a failed write is a warning).
#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cstdio>
#include <filesystem>

#include "common/test_util.h"
#include "core/json_config.h"
#include "models/autoencoder_kl.h"
#include "pipeline/preview.h"
#include "schedulers/ddim_scheduler.h"
#include "video_infinity/communicator.h"
#include "video_infinity/video_writer.h"

namespace fs = std::filesystem;

namespace vi::pipeline {
namespace {

// A planted map [C + 1, 3] in 0..255 per latent unit.
at::Tensor planted_map() {
  return at::tensor({30.f, -12.f, 5.f, -8.f, 25.f, 14.f, 3.f, 9.f, -40.f, 17.f, -6.f, 11.f, 128.f, 120.f, 100.f},
                    at::kFloat)
      .reshape({5, 3});
}

// A "decoder" that is exactly that map: each latent pixel -> an 8x8 block of its colour,
// [N, C, h, w] -> [N, 3, 8h, 8w] (not clamped: the fit sees the linear map itself).
at::Tensor linear_decoder(const at::Tensor& z, const at::Tensor& map) {
  at::Tensor rgb = at::einsum("nchw,ck->nkhw", {z.to(at::kDouble), map.narrow(0, 0, 4).to(at::kDouble)}) +
                   map[4].to(at::kDouble).view({1, 3, 1, 1});
  return rgb.repeat_interleave(8, 2).repeat_interleave(8, 3);
}

TEST(PreviewFit, RecoversAPlantedLinearMap) {
  at::manual_seed(1);
  at::Tensor z = at::randn({2, 4, 6, 5});
  const at::Tensor map = planted_map();
  LatentRgbMap fit = fit_latent_rgb_map(z, linear_decoder(z, map));
  const double err = (fit.weight - map).abs().max().item<double>();
  std::printf("planted map recovered: max |fitted - planted| %.3g over %lld pixels, block RMSE %.3g, shown RMSE %.2f "
              "(%.1f dB; uint8 and bilinear edges), constant colour %.2f\n",
              err, static_cast<long long>(fit.pixels), fit.rmse_blocks, fit.rmse, fit.psnr_db, fit.rmse_constant);
  EXPECT_LT(err, 1e-4);  // float32 storage of values up to 128
  EXPECT_LT(fit.rmse_blocks, 1e-6);
  EXPECT_EQ(fit.pixels, 2 * 6 * 5);
  EXPECT_GT(fit.rmse_constant, 10.0);  // the planted colours do vary
  // A map off by one entry is not what comes back.
  at::Tensor off = map.clone();
  off[2][1] += 1.0f;
  EXPECT_GT((fit_latent_rgb_map(z, linear_decoder(z, off)).weight - map).abs().max().item<double>(), 0.5);
}

TEST(PreviewFit, TinyVaeNoWorseThanAConstantColour) {
  c10::InferenceMode guard;
  // The final latents of the reference's 2-clip DDIM run: [1, 4, 8 frames, 8, 8].
  at::Tensor z = test::golden(test::golden_dir() + "/vi_ddim_ws2/rank0.safetensors", "final_latents");
  auto vae = models::load_vae(test::tiny_model_dir() + "/vae", at::kFloat, c10::kCPU);
  at::Tensor images = vae->decode_latents(z, 0).squeeze(0).permute({1, 0, 2, 3});  // [8, 3, 64, 64] in [-1, 1]
  images = images.div(2).add(0.5).clamp(0, 1).mul(255);
  at::Tensor frames = z.squeeze(0).permute({1, 0, 2, 3});  // [8, 4, 8, 8]
  LatentRgbMap fit = fit_latent_rgb_map(frames, images);
  std::printf("tiny VAE, 8 frames of 8x8 latents: block-mean RMSE %.2f vs a constant colour %.2f; the preview's "
              "image vs the full decode RMSE %.2f (%.1f dB PSNR)\n",
              fit.rmse_blocks, fit.rmse_constant, fit.rmse, fit.psnr_db);
  // Least squares with a bias column can always choose the constant colour (the block means'
  // mean), so it is never worse on what it minimises.
  EXPECT_LE(fit.rmse_blocks, fit.rmse_constant + 1e-9);
  EXPECT_TRUE(fit.weight.isfinite().all().item<bool>());
  EXPECT_GT(fit.psnr_db, 0.0);
  const nlohmann::json j = fit.to_json();
  EXPECT_EQ(j["weight"].size(), 4u);
  EXPECT_EQ(j["bias"].size(), 3u);
}

schedulers::DDIMScheduler one_step_ddim(const std::string& prediction_type) {
  auto config = schedulers::DDIMConfig::from_json(
      core::JsonConfig::load(test::tiny_model_dir() + "/scheduler/scheduler_config.json"));
  // One step to timestep t - 1000 < 0 with the final alpha 1: DDIM's x_{t-1} is its x0 exactly.
  config.set_alpha_to_one = true;
  config.clip_sample = false;
  config.prediction_type = prediction_type;
  schedulers::DDIMScheduler s(config);
  s.set_timesteps(1);
  return s;
}

TEST(PreviewX0, MatchesDdimPredictedOriginalSample) {
  at::manual_seed(2);
  const at::Tensor sample = at::randn({3, 4, 5, 6}), output = at::randn({3, 4, 5, 6});
  for (const char* type : {"epsilon", "v_prediction"}) {
    auto s = one_step_ddim(type);
    for (int64_t t : {999, 500, 37, 0}) {
      const at::Tensor ours = s.predicted_original_sample(output, t, sample);
      const at::Tensor ddim = s.step(output, t, sample);
      EXPECT_TRUE(at::equal(ours, ddim)) << type << " t " << t << ": max diff "
                                         << (ours - ddim).abs().max().item<double>();
    }
  }
  // Epsilon by hand, in double: x0 = (x - sqrt(1 - a) eps) / sqrt(a).
  auto s = one_step_ddim("epsilon");
  const double a = s.alphas_cumprod()[500];
  const at::Tensor by_hand = (sample.to(at::kDouble) - std::sqrt(1 - a) * output.to(at::kDouble)) / std::sqrt(a);
  EXPECT_LT(test::rel_error(s.predicted_original_sample(output, 500, sample), by_hand), 1e-6);
}

TEST(PreviewProjection, PerPixelAndIndependentOfTheBatch) {
  at::manual_seed(3);
  const at::Tensor x = at::randn({2, 4, 7, 3, 5}) * 2;  // [Cl, C, F, h, w]
  const at::Tensor map = planted_map();
  const at::Tensor all = project_to_rgb(x, 1, map);  // [2, 7, 3, 5, 3]
  ASSERT_EQ(all.sizes(), (std::vector<int64_t>{2, 7, 3, 5, 3}));
  ASSERT_EQ(all.scalar_type(), at::kByte);
  // Each clip and each frame alone: the same bytes.
  for (int64_t j = 0; j < 2; ++j) {
    EXPECT_TRUE(at::equal(project_to_rgb(x.narrow(0, j, 1), 1, map), all.narrow(0, j, 1)));
    EXPECT_TRUE(at::equal(project_to_rgb(x[j].select(1, 4), 0, map), all[j][4]));
  }
  // Against the map in double (clamped, rounded): at most one level apart (float vs double).
  at::Tensor ref = (at::einsum("ncfhw,ck->nfhwk", {x.to(at::kDouble), map.narrow(0, 0, 4).to(at::kDouble)}) +
                    map[4].to(at::kDouble))
                       .clamp(0, 255)
                       .round();
  EXPECT_LE((all.to(at::kDouble) - ref).abs().max().item<double>(), 1.0);
  EXPECT_GT(all.to(at::kDouble).std().item<double>(), 10.0);  // not clamped flat
}

TEST(PreviewUpsample, MatchesTorchBilinear) {
  at::manual_seed(4);
  const at::Tensor frames = at::randint(0, 256, {3, 5, 7, 3}, at::kByte);
  for (int64_t factor : {1, 4, 8}) {
    const at::Tensor ours = upsample_frames(frames, factor);
    ASSERT_EQ(ours.sizes(), (std::vector<int64_t>{3, 5 * factor, 7 * factor, 3}));
    at::Tensor ref = at::upsample_bilinear2d(frames.permute({0, 3, 1, 2}).to(at::kFloat), {5 * factor, 7 * factor},
                                             /*align_corners=*/false)
                         .round()
                         .permute({0, 2, 3, 1});
    const double diff = (ours.to(at::kFloat) - ref).abs().max().item<double>();
    EXPECT_LE(diff, 1.0) << "factor " << factor;  // rounding of the float interpolation
    if (factor == 1) EXPECT_TRUE(at::equal(ours, frames));
  }
}

// A world of one with the planted decoder: files, latest wins, a failure is a warning.
TEST(LivePreviewLocal, WritesTheLatestAndWarnsOnFailure) {
  if (!video::mp4_supported()) GTEST_SKIP() << "no ffmpeg in this build";
  const std::string dir = test::make_temp_dir("preview");
  auto comm = parallel::make_local_communicator();
  auto layout = parallel::ClipLayout::make({3, 2}, *comm);  // 2 clips, the second one short
  const at::Tensor map = planted_map();
  auto decoder = [&](const at::Tensor& z) { return linear_decoder(z, map).div(127.5).sub(1).to(at::kFloat); };
  PreviewOptions o;
  o.path = dir + "/v.mp4.preview.mp4";
  std::vector<int64_t> frame_counts;
  o.on_frames = [&](int64_t, const at::Tensor& f) { frame_counts.push_back(f.size(0)); };
  at::manual_seed(5);
  at::Tensor x0 = at::randn({2, 4, 3, 4, 6}) * 0.5;  // [Cl, C, F, h, w]
  {
    LivePreview p(layout, *comm, decoder, o);
    for (int64_t step = 0; step < 4; ++step) p.add(step, x0);
    p.finish();
    const nlohmann::json r = p.record();
    std::printf("%s\n", r.dump().c_str());
    EXPECT_EQ(r["previews"], 4);
    // Every preview was written or replaced while waiting; the last one always lands.
    EXPECT_EQ(r["written"].get<int64_t>() + r["replaced_while_waiting"].get<int64_t>(), 4);
    EXPECT_EQ(r["last_written_step"], 4);
    EXPECT_EQ(r["failed"], 0);
    // The fit of the planted decoder, through [-1, 1] and back, is the planted map.
    EXPECT_LT((p.map().weight - map).abs().max().item<double>(), 1e-2);
  }
  EXPECT_EQ(frame_counts, (std::vector<int64_t>(4, 5)));  // 3 + 2 frames, padding dropped
  EXPECT_TRUE(fs::exists(o.path));
  auto probe = test::run_command("ffprobe -v error -count_frames -select_streams v:0 -show_entries "
                                 "stream=nb_read_frames,width,height -of csv=p=0 " + o.path);
  if (probe.status == 0) EXPECT_EQ(probe.output, "24,16,5\n");  // 4x the 6x4 latents
  for (const auto& e : fs::directory_iterator(dir)) {
    EXPECT_EQ(e.path().filename().string().find("partial"), std::string::npos) << "leftover " << e.path();
  }

  // A directory that does not exist: a warning per preview, no exception, nothing left.
  o.path = dir + "/missing/v.preview.mp4";
  o.on_frames = nullptr;
  std::string log = test::log_of([&] {
    LivePreview p(layout, *comm, decoder, o);
    p.add(0, x0);
    p.finish();
    EXPECT_EQ(p.record()["failed"], 1);
    EXPECT_EQ(p.record()["written"], 0);
  });
  EXPECT_NE(log.find("preview after step 1 not written"), std::string::npos) << log;
  EXPECT_FALSE(fs::exists(dir + "/missing"));
  fs::remove_all(dir);
}

TEST(PreviewOutput, AnExistingPreviewIsRefusedUnlessOverwriteOrResume) {
  if (!video::mp4_supported()) GTEST_SKIP() << "no ffmpeg in this build";
  const std::string dir = test::make_temp_dir("preview_out");
  GenerationConfig c;
  c.output = dir + "/v.mp4";
  c.preview_every = 0;
  test::write_file(preview_path(c.output), "old");
  EXPECT_EQ(test::error_of([&] { prepare_preview(c); }), "");  // no preview asked for: not looked at
  c.preview_every = 3;
  const std::string e = test::error_of([&] { prepare_preview(c); });
  EXPECT_NE(e.find("--preview-every"), std::string::npos) << e;
  EXPECT_NE(e.find("exists"), std::string::npos) << e;
  c.resume = true;  // the interrupted run's own preview
  EXPECT_EQ(test::error_of([&] { prepare_preview(c); }), "");
  c.resume = false;
  c.overwrite = true;
  EXPECT_EQ(test::error_of([&] { prepare_preview(c); }), "");
  fs::remove_all(dir);
}

}  // namespace
}  // namespace vi::pipeline
