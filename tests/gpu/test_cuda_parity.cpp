// CUDA against the CPU on the tiny reference model (label gpu; skipped where LibTorch has no
// CUDA device, and excluded from CI's CPU run):
//  - the UNet in fp32 (TF32 off) matches the reference's golden output like the CPU does, and
//    in bf16 / fp16 within half-precision tolerance;
//  - the whole pipeline (2 clips with dual-scope attention on one rank, DDIM) on CUDA gives the
//    golden latents in fp32 and close latents in bf16 / fp16, and the same uint8 frames within
//    a few levels;
//  - the NCCL communicator in a world of one (a single-GPU machine has no second rank).
// Written without a GPU: the half-precision tolerances are estimates to be confirmed by the
// first run on a lent GPU (scripts/gpu_check.sh).
#include <ATen/ATen.h>
#include <ATen/Context.h>
#include <c10/core/InferenceMode.h>
#include <gtest/gtest.h>

#include <cstdio>

#include "common/test_util.h"
#include "models/temporal_context.h"
#include "models/unet3d_condition.h"
#include "pipeline/text_to_video.h"
#include "video_infinity/communicator.h"

using namespace vi;

namespace {

bool cuda_available() { return at::hasCUDA() && at::getNumGPUs() > 0; }

class CudaParity : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!cuda_available()) GTEST_SKIP() << "no CUDA device (or LibTorch without CUDA)";
    // fp32 parity means fp32 arithmetic: cuDNN would use TF32 for convolutions by default.
    at::globalContext().setAllowTF32CuDNN(false);
    at::globalContext().setAllowTF32CuBLAS(false);
  }
};

double half_tolerance(c10::ScalarType dtype) { return dtype == at::kFloat ? 1e-4 : 5e-2; }

TEST_F(CudaParity, UNetMatchesGoldenInEveryDtype) {
  const std::string file = "unet_forward.safetensors";
  for (c10::ScalarType dtype : {at::kFloat, at::kBFloat16, at::kHalf}) {
    c10::InferenceMode guard;
    auto model = models::load_unet3d(test::tiny_unet_dir(), dtype, c10::Device(c10::kCUDA, 0));
    models::PlainTemporalContext ctx;
    at::Tensor sample = test::golden(file, "sample").to(c10::kCUDA, dtype);
    at::Tensor text = test::golden(file, "encoder_hidden_states").to(c10::kCUDA, dtype);
    at::Tensor out = model->forward(sample, test::golden(file, "timestep"), text, /*fps=*/24, ctx);
    const double rel = test::rel_error(out.to(at::kCPU, at::kFloat), test::golden(file, "out"));
    std::printf("UNet on CUDA, %s: rel %.3e (tolerance %.0e)\n", c10::toString(dtype), rel, half_tolerance(dtype));
    EXPECT_LT(rel, half_tolerance(dtype)) << c10::toString(dtype);
  }
}

struct PipelineRun {
  at::Tensor latents;  // [2, 4, 8, 8, 8] fp32 CPU
  at::Tensor frames;   // [2, 8, 64, 64, 3] uint8 CPU
};

PipelineRun run_pipeline(c10::Device device, c10::ScalarType dtype) {
  // The reference's vi_ddim_ws2 run, on one rank with its 2 clips.
  GenerationConfig c = test::golden_generation_config(2, "ddim", 30);
  auto comm = parallel::make_local_communicator(device);
  resolve_config(c, 1);
  pipeline::TextToVideoPipeline p(c, *comm, device, dtype);
  p.load();
  at::Tensor text = p.encode_text();
  at::Tensor latents = p.denoise(p.initial_latents(), text);
  PipelineRun r;
  r.latents = latents.to(at::kCPU, at::kFloat);
  r.frames = at::stack({p.decode_clip(latents, 0).cpu(), p.decode_clip(latents, 1).cpu()});
  return r;
}

TEST_F(CudaParity, PipelineMatchesGoldenAndCpu) {
  const PipelineRun cpu = run_pipeline(c10::kCPU, at::kFloat);
  for (c10::ScalarType dtype : {at::kFloat, at::kBFloat16, at::kHalf}) {
    const PipelineRun gpu = run_pipeline(c10::Device(c10::kCUDA, 0), dtype);
    for (int64_t clip = 0; clip < 2; ++clip) {
      at::Tensor golden = test::golden(test::golden_dir() + "/vi_ddim_ws2/rank" + std::to_string(clip) +
                                           ".safetensors", "final_latents");
      const double rel = test::rel_error(gpu.latents.narrow(0, clip, 1), golden);
      std::printf("pipeline on CUDA, %s, clip %lld: final latents rel %.3e to the golden (tolerance %.0e)\n",
                  c10::toString(dtype), static_cast<long long>(clip), rel, half_tolerance(dtype));
      EXPECT_LT(rel, half_tolerance(dtype)) << c10::toString(dtype) << " clip " << clip;
    }
    const double cpu_rel = test::rel_error(gpu.latents, cpu.latents);
    const int64_t worst = (gpu.frames.to(at::kInt) - cpu.frames.to(at::kInt)).abs().max().item<int64_t>();
    std::printf("pipeline on CUDA, %s: latents rel %.3e to the CPU's, frames differ by at most %lld levels\n",
                c10::toString(dtype), cpu_rel, static_cast<long long>(worst));
    EXPECT_LT(cpu_rel, half_tolerance(dtype));
    EXPECT_LE(worst, dtype == at::kFloat ? 1 : 16) << c10::toString(dtype);
  }
}

TEST_F(CudaParity, NcclWorldOfOne) {
  if (!parallel::built_with_nccl()) GTEST_SKIP() << "built without NCCL";
  parallel::LaunchInfo launch;  // rank 0 of 1
  auto comm = parallel::make_nccl_communicator(launch);
  ASSERT_EQ(comm->world_size(), 1);
  at::Tensor x = at::arange(24, at::TensorOptions().dtype(at::kFloat).device(c10::kCUDA)).reshape({2, 3, 4});
  EXPECT_TRUE(at::equal(comm->all_gather(x).cpu(), x.cpu()));
  at::Tensor y = x.clone();
  comm->all_reduce_sum(y);
  EXPECT_TRUE(at::equal(y.cpu(), x.cpu()));
  comm->broadcast(y, 0);
  EXPECT_TRUE(at::equal(y.cpu(), x.cpu()));
  auto n = comm->exchange_neighbors(x, x);
  EXPECT_FALSE(n.from_left.defined());
  EXPECT_FALSE(n.from_right.defined());
  comm->barrier();
}

}  // namespace
