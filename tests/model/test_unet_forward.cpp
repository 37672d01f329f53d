// Parity of the UNet3D with the reference (diffusers 0.29.2 + the VideoCrafter fps hook) on the
// tiny random model: every top-level stage of one call (t 500, fps 24) and a CFG-shaped call
// (batch [uncond, cond], t 958). Tolerance: rel = max|out - ref| / max|ref| <= 1e-4 in fp32;
// reruns of the reference with another thread count differ by ~1e-6 (reference README), so a
// correct implementation lands near 1e-6 and any semantic error far above 1e-4.
#include <c10/core/InferenceMode.h>
#include <gtest/gtest.h>

#include <cstdio>
#include <string>
#include <vector>

#include "common/test_util.h"
#include "models/temporal_context.h"
#include "testing/test_model_unet.h"
#include "models/unet3d_condition.h"

namespace {

using vi::test::golden;
using vi::test::rel_error;

constexpr double kTolerance = 1e-4;
const char* const kFile = "unet_forward.safetensors";

vi::models::UNet3DConditionModel& tiny_unet() {
  static vi::models::UNet3DConditionModel model = vi::models::load_unet3d(vi::test::tiny_unet_dir());
  return model;
}

double check(const std::string& what, const at::Tensor& out, const at::Tensor& ref) {
  EXPECT_EQ(out.sizes(), ref.sizes()) << what;
  if (out.sizes() != ref.sizes()) return 1.0;
  const double rel = rel_error(out, ref);
  std::printf("  %-28s rel %.3e  max|ref| %.3e  (tolerance %.0e)\n", what.c_str(), rel,
              ref.abs().max().item<double>(), kTolerance);
  EXPECT_LE(rel, kTolerance) << what;
  return rel;
}

TEST(UNetForward, TinyMatchesReferenceAtEveryStage) {
  auto& model = tiny_unet();
  EXPECT_EQ(model->num_parameters(), 1349636);  // manifest: params.videocrafter_unet
  c10::InferenceMode guard;
  vi::models::PlainTemporalContext ctx;
  vi::models::StageMap stages;
  at::Tensor timestep = golden(kFile, "timestep");
  ASSERT_EQ(timestep.item<int64_t>(), 500);
  at::Tensor out = model->forward(golden(kFile, "sample"), timestep, golden(kFile, "encoder_hidden_states"),
                                  /*fps=*/24, ctx, &stages);
  EXPECT_DOUBLE_EQ(ctx.timestep(), 500.0);
  EXPECT_EQ(ctx.batch(), 1);
  const std::vector<std::string> names = {"time_proj",   "fps_proj",      "fps_embedding", "time_embedding",
                                          "conv_in",     "transformer_in", "down_blocks.0", "down_blocks.1",
                                          "mid_block",   "up_blocks.0",    "up_blocks.1",   "conv_out"};
  std::printf("tiny UNet, one call (t 500, fps 24):\n");
  for (const auto& name : names) {
    ASSERT_TRUE(stages.count(name)) << "stage " << name << " not captured";
    check(name, stages.at(name), golden(kFile, "intermediate." + name));
  }
  check("out", out, golden(kFile, "out"));
}

TEST(UNetForward, TinyCfgBatchMatchesReference) {
  auto& model = tiny_unet();
  c10::InferenceMode guard;
  vi::models::PlainTemporalContext ctx;
  at::Tensor timestep = golden(kFile, "cfg.timestep");
  ASSERT_EQ(timestep.item<int64_t>(), 958);
  at::Tensor sample = golden(kFile, "cfg.sample");
  at::Tensor out = model->forward(sample, timestep, golden(kFile, "cfg.encoder_hidden_states"), 24, ctx);
  EXPECT_EQ(ctx.batch(), 2);
  std::printf("tiny UNet, CFG batch [uncond, cond] (t 958):\n");
  at::Tensor ref = golden(kFile, "cfg.out");
  check("cfg.out", out, ref);
  check("cfg.out[uncond]", out[0], ref[0]);
  check("cfg.out[cond]", out[1], ref[1]);
  // The two branches share the sample but not the text: they must differ.
  EXPECT_GT((out[0] - out[1]).abs().max().item<double>(), 1e-3);
}

// The per-frame layers in chunks (1, 3 (not a divisor of B*F = 32) and 16 images) give the output
// of one pass: chunking only changes the batch size of convolutions and matmuls, hence their
// reduction order (~1e-6, like rerunning the reference with another thread count).
TEST(UNetForward, FrameChunksGiveTheSameOutput) {
  auto& model = tiny_unet();
  c10::InferenceMode guard;
  vi::models::PlainTemporalContext ctx;
  at::Tensor sample = golden(kFile, "cfg.sample"), text = golden(kFile, "cfg.encoder_hidden_states");
  model->set_frame_chunk(0);
  at::Tensor whole = model->forward(sample, 958.0, text, 24, ctx);
  at::Tensor chunked;
  for (int64_t chunk : {16, 1, 3}) {
    model->set_frame_chunk(chunk);
    chunked = model->forward(sample, 958.0, text, 24, ctx);
    const double rel = rel_error(chunked, whole);
    std::printf("  frame_chunk %2lld vs all at once: rel %.3e (tolerance 1e-5)\n", static_cast<long long>(chunk), rel);
    EXPECT_LE(rel, 1e-5) << "frame_chunk " << chunk;
  }
  model->set_frame_chunk(0);
  check("frame_chunk 3 vs reference", chunked, golden(kFile, "cfg.out"));
}

// Text states per frame ([B*F, S, D], prompt travel) that repeat each sample's states give the
// per-sample output (the same rows where the UNet repeats them itself: exactly). Then frames of
// one sample given the other sample's text: that sample's output moves, the other's does not.
// (Frame chunks with per-frame states: test_prompt_travel_mpi.)
TEST(UNetForward, PerFrameTextStatesOfEqualRowsGiveThePerSampleOutput) {
  auto& model = tiny_unet();
  c10::InferenceMode guard;
  vi::models::PlainTemporalContext ctx;
  at::Tensor sample = golden(kFile, "cfg.sample"), text = golden(kFile, "cfg.encoder_hidden_states");
  const int64_t F = sample.size(2);
  const at::Tensor per_frame = text.repeat_interleave(F, 0);  // [B*F, S, D]
  const at::Tensor whole = model->forward(sample, 958.0, text, 24, ctx);
  const double rel = rel_error(model->forward(sample, 958.0, per_frame, 24, ctx), whole);
  std::printf("  per-frame text states vs per sample: rel %.3e (tolerance 1e-6)\n", rel);
  EXPECT_LE(rel, 1e-6);
  at::Tensor mixed = per_frame.clone();
  mixed.narrow(0, F, F / 2).copy_(per_frame.narrow(0, 0, F / 2));  // sample 1's first frames: sample 0's text
  const at::Tensor out = model->forward(sample, 958.0, mixed, 24, ctx);
  const double moved = rel_error(out[1], whole[1]);
  std::printf("  sample 1 with sample 0's text on half its frames: rel %.3e from before\n", moved);
  EXPECT_LE(rel_error(out[0], whole[0]), 1e-6) << "sample 0 is untouched";
  EXPECT_GT(moved, 1e-3) << "sample 1 sees the other text on half its frames";
  EXPECT_NE(vi::test::error_of([&] { model->forward(sample, 958.0, per_frame.narrow(0, 0, F + 1), 24, ctx); })
                .find("encoder_hidden_states must be [2, S, 32] or per frame [" + std::to_string(2 * F) + ", S, 32]"),
            std::string::npos);
}

// The "tiny" preset of make-test-model is the reference tiny model's config, field by field.
TEST(UNetForward, TinyPresetIsTheReferenceConfig) {
  const auto ref = vi::models::UNet3DConfig::load(vi::test::tiny_unet_dir() + "/config.json");
  const auto preset = vi::testing::unet_preset("tiny");
  EXPECT_EQ(preset.to_json(), ref.to_json());
  EXPECT_EQ(vi::models::UNet3DConditionModel(preset)->num_parameters(), tiny_unet()->num_parameters());
}

// bf16 weights and activations (converted at load) compute the same function to bf16
// precision. Each op rounds its output to an 8-bit mantissa (~0.4 %); through ~40 layers of this
// random model that accumulated to ~8 % RMS with LibTorch 1.13's unfused attention and measures
// 1.9 % with 2.11 (scaled_dot_product_attention keeps scores and softmax in fp32), while a
// semantic error gives O(1). Tolerance 0.15 on the RMS error relative to the RMS of the output.
// fp16 (LibTorch 2.x has CPU kernels for it) keeps 3 more mantissa bits: tolerance 0.15 / 8
// (measured 0.23 %).
TEST(UNetForward, TinyHalfPrecisionIsCloseToReference) {
  for (at::ScalarType dtype : {at::kBFloat16, at::kHalf}) {
    auto model = vi::models::load_unet3d(vi::test::tiny_unet_dir(), dtype);
    EXPECT_EQ(model->dtype(), dtype);
    c10::InferenceMode guard;
    vi::models::PlainTemporalContext ctx;
    at::Tensor out = model->forward(golden(kFile, "sample"), golden(kFile, "timestep"),
                                    golden(kFile, "encoder_hidden_states"), 24, ctx);
    EXPECT_EQ(out.scalar_type(), dtype);
    at::Tensor ref = golden(kFile, "out");
    at::Tensor diff = out.to(at::kFloat) - ref;
    const double rms_rel = (diff.pow(2).mean().sqrt() / ref.pow(2).mean().sqrt()).item<double>();
    const double tolerance = dtype == at::kHalf ? 0.15 / 8 : 0.15;
    std::printf("  %s out: RMS rel %.3e (tolerance %.3g), max-abs rel %.3e\n", c10::toString(dtype), rms_rel,
                tolerance, rel_error(out.to(at::kFloat), ref));
    EXPECT_LE(rms_rel, tolerance) << c10::toString(dtype);
  }
}

}  // namespace
