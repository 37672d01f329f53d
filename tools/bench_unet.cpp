// Benchmark: one UNet3D forward (plain temporal context, CFG batch 2) on the CPU for the tiny and
// small random-weight presets at F = 8, 16, 32 frames, with the per-frame layers all at once and
// in chunks. Prints time and the peak RSS the call adds over the model and its inputs.
//   bench_unet [--presets tiny,small] [--frames 8,16,32] [--size 32] [--batch 2] [--reps 2]
//              [--chunks 0,8]
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <c10/core/InferenceMode.h>

#include <chrono>
#include <cstdio>
#include <sstream>
#include <string>
#include <vector>

#include "core/memory_stats.h"
#include "models/temporal_context.h"
#include "testing/test_model_unet.h"

using namespace vi;

namespace {

std::vector<std::string> split(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream in(s);
  std::string item;
  while (std::getline(in, item, ',')) out.push_back(item);
  return out;
}

std::vector<int64_t> split_ints(const std::string& s) {
  std::vector<int64_t> out;
  for (const auto& item : split(s)) out.push_back(std::stoll(item));
  return out;
}

double mb(int64_t bytes) { return static_cast<double>(bytes) / (1 << 20); }

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> presets = {"tiny", "small"};
  std::vector<int64_t> frames = {8, 16, 32}, chunks = {0, 8};
  int64_t size = 32, batch = 2, reps = 2;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    const bool has_value = i + 1 < argc;
    if (a == "--presets" && has_value) presets = split(argv[++i]);
    else if (a == "--frames" && has_value) frames = split_ints(argv[++i]);
    else if (a == "--chunks" && has_value) chunks = split_ints(argv[++i]);
    else if (a == "--size" && has_value) size = std::stoll(argv[++i]);
    else if (a == "--batch" && has_value) batch = std::stoll(argv[++i]);
    else if (a == "--reps" && has_value) reps = std::stoll(argv[++i]);
    else {
      std::fprintf(stderr,
                   "usage: %s [--presets tiny,small] [--frames 8,16,32] [--chunks 0,8] [--size 32] [--batch 2] "
                   "[--reps 2]\n",
                   argv[0]);
      return 2;
    }
  }
  std::printf("UNet3D forward on the CPU, %d threads, batch %lld (CFG), latent %lldx%lld, fp32, mean of %lld reps\n",
              at::get_num_threads(), static_cast<long long>(batch), static_cast<long long>(size),
              static_cast<long long>(size), static_cast<long long>(reps));
  std::printf("| preset | params | F | frame_chunk | ms / forward | ms / frame | peak RSS added MB | max |out| |\n");
  std::printf("|---|---|---|---|---|---|---|---|\n");
  for (const auto& preset : presets) {
    auto model = vi::testing::make_random_unet(preset, 0);
    const auto& config = model->config();
    for (int64_t F : frames) {
      c10::InferenceMode guard;
      at::manual_seed(0);
      at::Tensor sample = at::randn({batch, config.in_channels, F, size, size});
      at::Tensor text = at::randn({batch, 77, config.cross_attention_dim});
      for (int64_t chunk : chunks) {
        model->set_frame_chunk(chunk);
        models::PlainTemporalContext ctx;
        at::Tensor out = model->forward(sample, 500.0, text, 24, ctx);  // warm-up
        out.reset();
        const int64_t base = core::current_rss_bytes();
        core::reset_peak_rss();
        auto t0 = std::chrono::steady_clock::now();
        for (int64_t r = 0; r < reps; ++r) {
          out.reset();
          out = model->forward(sample, 500.0, text, 24, ctx);
        }
        const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count() / reps;
        const double peak = mb(core::peak_rss_bytes() - base);
        std::printf("| %s | %.1f M | %lld | %lld | %.0f | %.1f | %.0f | %.2f |\n", preset.c_str(),
                    model->num_parameters() / 1e6, static_cast<long long>(F), static_cast<long long>(chunk), ms,
                    ms / static_cast<double>(F), peak, out.abs().max().item<double>());
        std::fflush(stdout);
      }
    }
  }
  std::printf("peak RSS added = peak RSS during the timed calls minus RSS with the model and inputs allocated\n");
  return 0;
}
