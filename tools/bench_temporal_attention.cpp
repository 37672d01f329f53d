// Benchmark: one temporal attention of the dual-scope kind at F = 24, 96, 384 frames per clip:
// the banded block-matmul form (what the CPU runs), the gathered form (one attention per query
// block with a shared bias through scaled_dot_product_attention: what CUDA runs) and the
// reference's dense masked matrix. Prints
// time and peak memory for each F; banded forms should grow linearly in F, dense quadratically.
//   bench_temporal_attention [--pixels N] [--heads H] [--reps R] [--block Fb] [--no-dense]
//                            [--device cpu|cuda] [--dtype fp32|bf16|fp16]
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <c10/core/InferenceMode.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>

#include "core/memory_stats.h"
#include "parallel/dual_scope.h"
#include "tool_main.h"
#include "torch_cuda_stats.h"

using namespace vi;

int run(int argc, char** argv) {
  int64_t pixels = 256, heads = 5, reps = 3, block = 0;
  bool dense = true;
  std::string device_flag = "cpu", dtype_flag = "fp32";
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--pixels" && i + 1 < argc) pixels = std::stoll(argv[++i]);
    else if (a == "--heads" && i + 1 < argc) heads = std::stoll(argv[++i]);
    else if (a == "--reps" && i + 1 < argc) reps = std::stoll(argv[++i]);
    else if (a == "--block" && i + 1 < argc) block = std::stoll(argv[++i]);
    else if (a == "--device" && i + 1 < argc) device_flag = argv[++i];
    else if (a == "--dtype" && i + 1 < argc) dtype_flag = argv[++i];
    else if (a == "--no-dense") dense = false;
    else {
      std::fprintf(stderr,
                   "usage: %s [--pixels N] [--heads H] [--reps R] [--block Fb] [--no-dense] [--device cpu|cuda] "
                   "[--dtype fp32|bf16|fp16]\n",
                   argv[0]);
      return 2;
    }
  }
  const c10::Device device = device_flag == "cuda" ? c10::Device(c10::kCUDA, 0) : c10::Device(device_flag);
  const at::ScalarType dtype = dtype_flag == "bf16" ? at::kBFloat16 : dtype_flag == "fp16" ? at::kHalf : at::kFloat;
  c10::InferenceMode guard;
  const int64_t P = 8, G = 16, d = 64, BH = 2 * pixels * heads;  // CFG batch x pixels x heads
  std::printf("temporal attention, BH = 2 x %lld pixels x %lld heads = %lld, head dim %lld, P %lld, G %lld, %s %s, "
              "%d threads, gathered blocks of %s frames\n",
              (long long)pixels, (long long)heads, (long long)BH, (long long)d, (long long)P, (long long)G,
              device.str().c_str(), c10::toString(dtype), at::get_num_threads(),
              block > 0 ? std::to_string(block).c_str() : "max(2P, 8)");
  std::printf("| F | banded ms | banded peak MB | gathered ms | gathered peak MB | dense ms | dense peak MB |\n"
              "|---|---|---|---|---|---|---|\n");
  for (int64_t F : {24, 96, 384}) {
    at::manual_seed(0);
    auto opts = at::TensorOptions().device(device).dtype(dtype);
    at::Tensor q = at::randn({BH, F, d}, opts), k = at::randn({BH, F + 2 * P, d}, opts),
               v = at::randn({BH, F + 2 * P, d}, opts);
    at::Tensor kg = at::randn({BH, G, d}, opts), vg = at::randn({BH, G, d}, opts);
    tools::synchronize(device);
    const double inputs_mb = device.is_cuda() ? tools::peak_memory_bytes(device) / (1 << 20)
                                              : static_cast<double>(core::current_rss_bytes()) / (1 << 20);
    enum Form { kBanded, kGathered, kDense };
    auto measure = [&](Form form, double& ms, double& peak_mb) {
      auto run = [&] {
        const parallel::PhaseBias phase{10, 0};
        if (form == kDense) return parallel::dense_reference_attention(q, k, v, kg, vg, P, 1.0, false, phase);
        if (form == kBanded) {
          return parallel::banded_attention(q, k, v, kg, vg, P, 1.0, false, phase, at::Tensor(),
                                            parallel::BandedImpl::kBlockMatmul);
        }
        auto blocks = parallel::gather_banded_blocks(q, k, v, kg, vg, P, 1.0, false, phase, at::Tensor(), block);
        return parallel::ungather_blocks(parallel::blocks_attention(blocks, /*use_sdpa=*/true), F, dtype);
      };
      run();  // warm-up
      tools::synchronize(device);
      tools::reset_peak_memory(device);
      auto t0 = std::chrono::steady_clock::now();
      for (int64_t r = 0; r < reps; ++r) run();
      tools::synchronize(device);
      ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count() / reps;
      peak_mb = tools::peak_memory_bytes(device) / (1 << 20) - inputs_mb;
    };
    double bms = 0, bmb = 0, gms = 0, gmb = 0, dms = 0, dmb = 0;
    measure(kBanded, bms, bmb);
    measure(kGathered, gms, gmb);
    if (dense) measure(kDense, dms, dmb);
    if (dense) {
      std::printf("| %lld | %.1f | %.0f | %.1f | %.0f | %.1f | %.0f |\n", (long long)F, bms, bmb, gms, gmb, dms, dmb);
    } else {
      std::printf("| %lld | %.1f | %.0f | %.1f | %.0f | - | - |\n", (long long)F, bms, bmb, gms, gmb);
    }
    std::fflush(stdout);
  }
  std::printf("peak MB = peak %s during the calls minus that with the inputs allocated\n",
              device.is_cuda() ? "CUDA allocation" : "RSS");
  return 0;
}

int main(int argc, char** argv) { return vi::tools::run_main(argc, argv, run); }
