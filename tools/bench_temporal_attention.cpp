// Benchmark: one temporal attention of the dual-scope kind at F = 24, 96, 384 frames per clip,
// banded (what the model runs) against the reference's dense masked matrix. Prints time and
// peak memory for each F; banded should grow linearly in F, dense quadratically.
//   bench_temporal_attention [--pixels N] [--heads H] [--reps R] [--no-dense]
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <c10/core/InferenceMode.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>

#include "core/memory_stats.h"
#include "parallel/dual_scope.h"

using namespace vi;

int main(int argc, char** argv) {
  int64_t pixels = 256, heads = 5, reps = 3;
  bool dense = true;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--pixels" && i + 1 < argc) pixels = std::stoll(argv[++i]);
    else if (a == "--heads" && i + 1 < argc) heads = std::stoll(argv[++i]);
    else if (a == "--reps" && i + 1 < argc) reps = std::stoll(argv[++i]);
    else if (a == "--no-dense") dense = false;
    else {
      std::fprintf(stderr, "usage: %s [--pixels N] [--heads H] [--reps R] [--no-dense]\n", argv[0]);
      return 2;
    }
  }
  c10::InferenceMode guard;
  const int64_t P = 8, G = 16, d = 64, BH = 2 * pixels * heads;  // CFG batch x pixels x heads
  std::printf("temporal attention, BH = 2 x %lld pixels x %lld heads = %lld, head dim %lld, P %lld, G %lld, %d threads\n",
              (long long)pixels, (long long)heads, (long long)BH, (long long)d, (long long)P, (long long)G,
              at::get_num_threads());
  std::printf("| F | banded ms | banded peak MB | dense ms | dense peak MB | dense/banded time |\n|---|---|---|---|---|---|\n");
  for (int64_t F : {24, 96, 384}) {
    at::manual_seed(0);
    at::Tensor q = at::randn({BH, F, d}), k = at::randn({BH, F + 2 * P, d}), v = at::randn({BH, F + 2 * P, d});
    at::Tensor kg = at::randn({BH, G, d}), vg = at::randn({BH, G, d});
    const double inputs_mb = static_cast<double>(core::current_rss_bytes()) / (1 << 20);
    auto measure = [&](bool use_dense, double& ms, double& peak_mb) {
      auto run = [&] {
        return use_dense ? parallel::dense_reference_attention(q, k, v, kg, vg, P, 1.0, false, {10, 0})
                         : parallel::banded_attention(q, k, v, kg, vg, P, 1.0, false, {10, 0});
      };
      run();  // warm-up
      core::reset_peak_rss();
      auto t0 = std::chrono::steady_clock::now();
      for (int64_t r = 0; r < reps; ++r) run();
      ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count() / reps;
      peak_mb = static_cast<double>(core::peak_rss_bytes()) / (1 << 20) - inputs_mb;
    };
    double bms = 0, bmb = 0, dms = 0, dmb = 0;
    measure(false, bms, bmb);
    if (dense) measure(true, dms, dmb);
    if (dense) {
      std::printf("| %lld | %.1f | %.0f | %.1f | %.0f | %.2f |\n", (long long)F, bms, bmb, dms, dmb, dms / bms);
    } else {
      std::printf("| %lld | %.1f | %.0f | - | - | - |\n", (long long)F, bms, bmb);
    }
    std::fflush(stdout);
  }
  std::printf("peak MB = peak RSS during the call minus RSS with the inputs allocated\n");
  return 0;
}
