// Benchmark: one denoising step (the CFG-batched UNet call + guidance) of a random-weight model
// in a preset's configuration, for several frame counts per process, with the dual-scope
// temporal context over a single-process world (clips of --frames-per-clip frames batched on
// this device). Prints a table (s/step, frames/s, TFLOP/s and % of --peak-tflops when
// --gflop-per-frame is given, peak memory) and writes it as JSON.
//   bench_denoise_step --preset videocrafter2 --device cuda --dtype bf16 --frames 24,96,288
//       [--height 320 --width 512 --frames-per-clip 24 --iters 3 --frame-chunk 0
//        --gflop-per-frame 786 --peak-tflops 989 --until-oom --json out.json]
#include <ATen/ATen.h>
#include <ATen/Context.h>
#include <c10/core/InferenceMode.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "core/memory_stats.h"
#include "models/test_model_unet.h"
#include "parallel/dual_scope_context.h"
#include "pipeline/text_to_video.h"
#include "torch_cuda_stats.h"

using namespace vi;

namespace {

std::vector<int64_t> parse_list(const std::string& s) {
  std::vector<int64_t> out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) out.push_back(std::stoll(item));
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  std::string preset = "tiny", device_flag = "auto", dtype_flag = "auto", json_path;
  std::vector<int64_t> frame_counts = {24, 96, 288};
  int64_t height = 320, width = 512, per_clip = 24, iters = 3, frame_chunk = 0;
  double gflop_per_frame = 0, peak_tflops = 0;
  bool until_oom = false;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) throw std::runtime_error("missing value for " + a);
      return argv[++i];
    };
    if (a == "--preset") preset = next();
    else if (a == "--device") device_flag = next();
    else if (a == "--dtype") dtype_flag = next();
    else if (a == "--frames") frame_counts = parse_list(next());
    else if (a == "--height") height = std::stoll(next());
    else if (a == "--width") width = std::stoll(next());
    else if (a == "--frames-per-clip") per_clip = std::stoll(next());
    else if (a == "--iters") iters = std::stoll(next());
    else if (a == "--frame-chunk") frame_chunk = std::stoll(next());
    else if (a == "--gflop-per-frame") gflop_per_frame = std::stod(next());
    else if (a == "--peak-tflops") peak_tflops = std::stod(next());
    else if (a == "--until-oom") until_oom = true;
    else if (a == "--json") json_path = next();
    else {
      std::fprintf(stderr, "unknown argument %s (see the comment at the top of bench_denoise_step.cpp)\n", a.c_str());
      return 2;
    }
  }
  c10::InferenceMode guard;
  const c10::Device device = pipeline::resolve_device(device_flag, 0);
  const c10::ScalarType dtype = pipeline::resolve_dtype(dtype_flag, device);
  auto unet = models::make_random_unet(preset, 0);
  unet->to(device, dtype);
  unet->set_frame_chunk(frame_chunk);
  const int64_t cross = unet->config().cross_attention_dim;
  auto comm = parallel::make_local_communicator(device);
  std::printf("denoising step, preset %s (%lld parameters), %s %s, %lldx%lld, %lld frames per clip, CFG batch 2\n",
              preset.c_str(), static_cast<long long>(unet->num_parameters()), device.str().c_str(),
              c10::toString(dtype), static_cast<long long>(width), static_cast<long long>(height),
              static_cast<long long>(per_clip));
  std::printf("| frames | s/step | frames/s | TFLOP/s | %% of peak | peak MB |\n|---|---|---|---|---|---|\n");
  nlohmann::json rows = nlohmann::json::array();
  if (until_oom) {
    for (int64_t f = frame_counts.empty() ? per_clip : frame_counts.back() * 2; f <= 8192; f *= 2) frame_counts.push_back(f);
  }
  for (int64_t frames : frame_counts) {
    if (frames % per_clip != 0) {
      std::printf("| %lld | skipped: not a multiple of %lld |\n", static_cast<long long>(frames), static_cast<long long>(per_clip));
      continue;
    }
    try {
      const int64_t clips = frames / per_clip;
      parallel::DualScopeSettings settings;
      auto layout = parallel::ClipLayout::make(clips, per_clip, *comm);
      parallel::DualScopeContext ctx(settings, layout, *comm);
      at::Tensor latents = at::randn({2 * clips, unet->config().in_channels, per_clip, height / 8, width / 8},
                                     at::TensorOptions().device(device).dtype(dtype));
      at::Tensor text = at::randn({2 * clips, 77, cross}, at::TensorOptions().device(device).dtype(dtype));
      auto step = [&] {
        at::Tensor eps = unet->forward(latents, 500.0, text, 24.0, ctx);
        at::Tensor guided = eps.narrow(0, 0, clips) + 12.0 * (eps.narrow(0, clips, clips) - eps.narrow(0, 0, clips));
        return guided;
      };
      step();  // warm-up (cuDNN autotuning, allocator)
      tools::synchronize(device);
      tools::reset_peak_memory(device);
      core::reset_peak_rss();
      auto t0 = std::chrono::steady_clock::now();
      for (int64_t i = 0; i < iters; ++i) step();
      tools::synchronize(device);
      const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / iters;
      const double peak_mb = tools::peak_memory_bytes(device) / 1048576.0;
      const double tflops = gflop_per_frame > 0 ? 2.0 * frames * gflop_per_frame / s / 1000.0 : 0;
      std::printf("| %lld | %.3f | %.1f | %s | %s | %.0f |\n", static_cast<long long>(frames), s, frames / s,
                  tflops > 0 ? std::to_string(tflops).substr(0, 6).c_str() : "-",
                  tflops > 0 && peak_tflops > 0 ? std::to_string(100 * tflops / peak_tflops).substr(0, 5).c_str() : "-",
                  peak_mb);
      std::fflush(stdout);
      rows.push_back({{"frames", frames}, {"s_per_step", s}, {"frames_per_s", frames / s}, {"tflops", tflops},
                      {"peak_mb", peak_mb}});
    } catch (const std::exception& e) {
      std::printf("| %lld | failed: %s |\n", static_cast<long long>(frames), std::string(e.what()).substr(0, 80).c_str());
      if (until_oom) break;
    }
  }
  if (!json_path.empty()) {
    std::ofstream(json_path) << nlohmann::json{{"preset", preset}, {"device", device.str()},
                                               {"dtype", c10::toString(dtype)}, {"height", height}, {"width", width},
                                               {"frames_per_clip", per_clip}, {"rows", rows}}.dump(2);
  }
  return 0;
}
