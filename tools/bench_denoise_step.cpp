// Benchmark: one denoising step (the CFG-batched UNet call + guidance) of a random-weight model
// in a preset's configuration, for several frame counts, with the dual-scope temporal context
// over the job's ranks (one process: a world of one; under mpirun: MPI, or NCCL on CUDA); the
// video's clips of --frames-per-clip frames are split over the ranks and batched on each.
// Prints a table (s/step, frames/s, TFLOP/s and % of --peak-tflops, communication share of the
// step, MB sent per UNet call, peak memory) and writes it as JSON.
// FLOPs: our own count (models/unet3d_flops: convs, linears, Q K^T and A V with the dual-scope
// keys per query 2P+1+G and the Pc conv halos), unless --gflop-per-frame overrides it;
// --count-flops prints that count's breakdown for the first frame count and exits.
// --preview-every K: per frame count, also 2K steps without and 2K steps with the live preview
// (pipeline/preview.h: x0, projection, one all-gather, rank 0's encoder thread writing
// --preview-out) side by side, the map fitted first to a random VAE of the preset; prints the
// preview's cost as % of a step. With --preview-only no UNet runs: the preview's own cost at a
// shape too large for the CPU's steps (e.g. one H200 rank's 288 frames at 320x512), x0 random.
//   bench_denoise_step --preset videocrafter2 --device cuda --dtype bf16 --frames 24,96,288
//       [--height 320 --width 512 --frames-per-clip 24 --iters 3 --frame-chunk 0 --channels-last --cfg-serial
//        --gflop-per-frame G --peak-tflops 989 --until-oom --sync-comm --no-cudnn-benchmark --count-flops
//        --preview-every K --preview-out PATH --preview-only --json out.json]
#include <ATen/ATen.h>
#include <ATen/Context.h>
#include <c10/core/InferenceMode.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "core/memory_stats.h"
#include "testing/test_model_unet.h"
#include "models/unet3d_flops.h"
#include "parallel/dual_scope_context.h"
#include "parallel/timed_communicator.h"
#include "pipeline/preview.h"
#include "pipeline/text_to_video.h"
#include "testing/random_init.h"
#include "testing/test_model_text_vae.h"
#include "tool_main.h"
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

// The FLOP shape of one rank's UNet call: `batch` clips of `frames` frames, dual-scope temporal
// layers (2P + 1 + G keys per query, Pc halo frames around every temporal conv).
models::UNetFlopShape flop_shape(int64_t batch, int64_t frames, int64_t h, int64_t w, int64_t clips,
                                 const parallel::DualScopeSettings& s) {
  models::UNetFlopShape shape;
  shape.batch = batch;
  shape.frames = frames;
  shape.height = h;
  shape.width = w;
  const auto picks = static_cast<int64_t>(parallel::global_frame_indices(frames, s.top_k, clips).size());
  const int64_t G = std::min<int64_t>(s.top_k, clips * picks);
  shape.temporal_keys = 2 * s.attn_padding + 1 + G;
  shape.conv_halo = s.conv_padding;
  return shape;
}

void print_flop_breakdown(const models::UNet3DConfig& config, const std::string& preset, int64_t frames, int64_t h,
                          int64_t w, const models::UNetFlopShape& dual) {
  models::UNetFlopShape plain = dual;
  plain.batch = 1;
  plain.temporal_keys = 0;
  plain.conv_halo = 0;
  models::UNetFlopShape one = dual;
  one.batch = 1;
  const auto p = models::count_unet_flops(config, plain), d = models::count_unet_flops(config, one);
  std::printf("UNet FLOPs (2 per multiply-add) of preset %s, latent %lldx%lld, %lld frames, one CFG branch; "
              "elementwise ops (norms, activations, softmax, adds) not counted\n",
              preset.c_str(), (long long)h, (long long)w, (long long)frames);
  std::printf("plain: temporal attention over all %lld frames; dual-scope: %lld keys per query, %lld halo frames "
              "each side of the temporal convs\n\n",
              (long long)frames, (long long)dual.temporal_keys, (long long)dual.conv_halo);
  std::printf("| part | plain GFLOP/frame | dual-scope GFLOP/frame |\n|---|---|---|\n");
  const double f = static_cast<double>(frames) * 1e9;
  for (const char* kind : {"conv2d", "conv3d", "linear", "attention"}) {
    std::printf("| %s | %.2f | %.2f |\n", kind, p.of_kind(kind) / f, d.of_kind(kind) / f);
  }
  // Spatial vs temporal attention: temporal attention lives in temp_attentions.* and transformer_in.
  auto temporal_attention = [](const models::UNetFlops& x) {
    double s = 0;
    for (const auto& l : x.layers) {
      if (l.kind == "attention" && (l.name.find("temp_attentions") != std::string::npos ||
                                    l.name.rfind("transformer_in", 0) == 0)) {
        s += l.flops;
      }
    }
    return s;
  };
  std::printf("| (of which temporal attention) | %.2f | %.2f |\n", temporal_attention(p) / f, temporal_attention(d) / f);
  for (const char* part : {"conv_in", "transformer_in", "down_blocks.", "mid_block", "up_blocks.", "conv_out",
                           "time_embedding", "fps_embedding"}) {
    std::printf("| %s | %.3f | %.3f |\n", part, p.under(part) / f, d.under(part) / f);
  }
  std::printf("| **total** | **%.2f** | **%.2f** |\n", p.total() / f, d.total() / f);
}

// The preset's VAE with random weights: the stand-in for the model's decoder that the preview fits to.
models::AutoencoderKL random_vae(const std::string& preset, c10::Device device, c10::ScalarType dtype) {
  models::AutoencoderKL vae(vi::testing::vae_preset(preset));
  vi::testing::randomize_parameters(*vae, 1);
  vae->to(device, dtype);
  return vae;
}

// Latent frames [N, C, h, w] -> images [N, 3, 8h, 8w] through `vae` (as the pipeline's decode_images).
pipeline::LivePreview::Decoder decoder_of(models::AutoencoderKL& vae, c10::Device device, c10::ScalarType dtype) {
  return [&vae, device, dtype](const at::Tensor& z) {
    return vae->decode_latents(z.to(device, dtype).permute({1, 0, 2, 3}).unsqueeze(0), 1).squeeze(0)
        .permute({1, 0, 2, 3}).to(at::kFloat);
  };
}

// --preview-every: after K steps with a preview (untimed: the map is fitted there), 3 rounds of
// K steps without and K steps with a preview, alternating so that both see the same machine
// (other jobs on it come and go). The preview comes at the first step of its block, so its
// encoding overlaps the rest of the block, as it overlaps the next K steps in a run. x0 comes
// from the guided output with a fixed alpha_prod_t (the pipeline takes the scheduler's: the same
// element-wise cost).
nlohmann::json measure_preview(const std::string& preset, int64_t every, const std::string& out,
                               const at::Tensor& latents, const std::function<at::Tensor()>& step,
                               const parallel::ClipLayout& layout, parallel::Communicator& comm, c10::Device device,
                               c10::ScalarType dtype) {
  models::AutoencoderKL vae = random_vae(preset, device, dtype);
  pipeline::PreviewOptions options;
  options.path = comm.rank() == 0 ? out : std::string();
  pipeline::LivePreview live(layout, comm, decoder_of(vae, device, dtype), options);
  const float alpha = 0.5f, sqrt_alpha = std::sqrt(alpha), sqrt_beta = std::sqrt(1.0f - alpha);
  const at::Tensor x = latents.to(at::kFloat);
  auto x0_of = [&](const at::Tensor& guided) { return (x - guided.to(at::kFloat) * sqrt_beta) / sqrt_alpha; };
  auto timed_block = [&](bool preview) {
    tools::synchronize(device);
    comm.barrier();
    const auto t0 = std::chrono::steady_clock::now();
    for (int64_t i = 0; i < every; ++i) {
      at::Tensor guided = step();
      if (preview && i == 0) live.add(i, x0_of(guided));
    }
    tools::synchronize(device);
    comm.barrier();
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  };
  timed_block(true);  // the fit and a first preview
  const double loop_before = live.record()["loop_seconds"].get<double>();
  constexpr int kRounds = 3;
  double plain = 0, with = 0;
  for (int round = 0; round < kRounds; ++round) {
    plain += timed_block(false);
    with += timed_block(true);
  }
  plain /= static_cast<double>(kRounds * every);
  with /= static_cast<double>(kRounds * every);
  live.finish();
  nlohmann::json r = live.record();
  const double loop_per_preview = (r["loop_seconds"].get<double>() - loop_before) / kRounds;
  r["every"] = every;
  r["step_s_without"] = plain;
  r["step_s_with"] = with;
  r["overhead_pct_of_step_measured"] = 100.0 * (with - plain) / plain;
  r["loop_s_per_preview"] = loop_per_preview;
  r["overhead_pct_of_step_loop"] = 100.0 * loop_per_preview / (static_cast<double>(every) * plain);
  if (comm.rank() == 0) {
    std::printf("preview every %lld steps: %.3f s/step without, %.3f s/step with (%+.2f %% measured); on the loop "
                "%.1f ms per preview = %.3f %% of a step at K = %lld; encoder thread %.1f ms per preview (%lld "
                "written, %lld replaced while waiting); fit %.2f s once\n",
                static_cast<long long>(every), plain, with, r["overhead_pct_of_step_measured"].get<double>(),
                1e3 * loop_per_preview, r["overhead_pct_of_step_loop"].get<double>(), static_cast<long long>(every),
                1e3 * r["encode_seconds"].get<double>() / std::max<int64_t>(r["written"].get<int64_t>(), 1),
                static_cast<long long>(r["written"].get<int64_t>()),
                static_cast<long long>(r["replaced_while_waiting"].get<int64_t>()), r["fit_seconds"].get<double>());
    std::fflush(stdout);
  }
  return r;
}

}  // namespace

int run(int argc, char** argv) {
  parallel::LaunchInfo launch = parallel::init_launch(&argc, &argv);
  std::string preset = "tiny", device_flag = "auto", dtype_flag = "auto", json_path;
  std::vector<int64_t> frame_counts = {24, 96, 288};
  int64_t height = 320, width = 512, per_clip = 24, iters = 3, frame_chunk = 0;
  double gflop_override = 0, peak_tflops = 0;
  bool until_oom = false, channels_last = false, count_flops = false, sync_comm = false, cfg_serial = false;
  bool cudnn_benchmark = true, preview_only = false;
  int64_t preview_every = 0;
  std::string preview_out = "/tmp/bench_denoise_step.preview.mp4";
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
    else if (a == "--gflop-per-frame") gflop_override = std::stod(next());
    else if (a == "--peak-tflops") peak_tflops = std::stod(next());
    else if (a == "--until-oom") until_oom = true;
    else if (a == "--channels-last") channels_last = true;
    else if (a == "--cfg-serial") cfg_serial = true;
    else if (a == "--count-flops") count_flops = true;
    else if (a == "--sync-comm") sync_comm = true;
    else if (a == "--no-cudnn-benchmark") cudnn_benchmark = false;
    else if (a == "--json") json_path = next();
    else if (a == "--preview-every") preview_every = std::stoll(next());
    else if (a == "--preview-out") preview_out = next();
    else if (a == "--preview-only") preview_only = true;
    else {
      std::fprintf(stderr, "unknown argument %s (see the comment at the top of bench_denoise_step.cpp)\n", a.c_str());
      parallel::finalize_launch();
      return 2;
    }
  }
  const bool root = launch.rank == 0;
  const int64_t h = height / 8, w = width / 8;
  parallel::DualScopeSettings settings;
  if (count_flops) {
    const int64_t frames = frame_counts.empty() ? per_clip : frame_counts.front();
    if (root) {
      print_flop_breakdown(vi::testing::unet_preset(preset), preset, per_clip, h, w,
                           flop_shape(1, per_clip, h, w, std::max<int64_t>(frames / per_clip, 1), settings));
    }
    parallel::finalize_launch();
    return 0;
  }
  c10::InferenceMode guard;
  const c10::Device device = pipeline::resolve_device(device_flag, launch.local_rank);
  const c10::ScalarType dtype = pipeline::resolve_dtype(dtype_flag, device);
  pipeline::set_cudnn_benchmark(device, cudnn_benchmark);  // as generate does, unless told not to
  auto unet = vi::testing::make_random_unet(preset, 0, device, dtype);  // drawn on the device: fast
  unet->set_frame_chunk(frame_chunk);
  unet->set_channels_last(channels_last);
  const int64_t cross = unet->config().cross_attention_dim;
  auto inner = parallel::make_communicator(launch, device);
  parallel::TimedCommunicator comm(*inner, sync_comm ? std::function<void()>([device] { tools::synchronize(device); })
                                                     : std::function<void()>());
  const int64_t ranks = comm.world_size();
  if (root) {
    std::printf("denoising step, preset %s (%lld parameters), %s %s%s%s, %lldx%lld, %lld frames per clip, CFG %s, "
                "%lld rank(s) (%s)\n",
                preset.c_str(), static_cast<long long>(unet->num_parameters()), device.str().c_str(),
                c10::toString(dtype), channels_last ? " channels-last" : "",
                device.is_cuda() ? (cudnn_benchmark ? " cuDNN benchmark" : " no cuDNN benchmark") : "", static_cast<long long>(width),
                static_cast<long long>(height), static_cast<long long>(per_clip),
                cfg_serial ? "branches as two calls" : "batch 2", static_cast<long long>(ranks),
                comm.name().c_str());
    std::printf("| frames | ranks | s/step | frames/s | GFLOP/frame | TFLOP/s | %% of peak | comm %% | MB sent/call | "
                "peak MB |\n|---|---|---|---|---|---|---|---|---|---|\n");
  }
  nlohmann::json rows = nlohmann::json::array();
  if (until_oom) {
    for (int64_t f = frame_counts.empty() ? per_clip : frame_counts.back() * 2; f <= 8192; f *= 2) frame_counts.push_back(f);
  }
  for (int64_t frames : frame_counts) {
    if (frames % (per_clip * ranks) != 0) {
      if (root) {
        std::printf("| %lld | skipped: not a multiple of %lld frames per clip x %lld ranks |\n",
                    static_cast<long long>(frames), static_cast<long long>(per_clip), static_cast<long long>(ranks));
      }
      continue;
    }
    try {
      const int64_t clips = frames / per_clip;
      auto layout = parallel::ClipLayout::make(clips, per_clip, comm);
      const int64_t local = layout.local_clips;
      parallel::DualScopeContext ctx(settings, layout, comm);
      at::Tensor latents = at::randn({2 * local, unet->config().in_channels, per_clip, h, w},
                                     at::TensorOptions().device(device).dtype(dtype));
      at::Tensor text = at::randn({2 * local, 77, cross}, at::TensorOptions().device(device).dtype(dtype));
      auto step = [&] {
        if (cfg_serial) {  // generate --cfg-serial: the two branches as two calls of the local clips
          at::Tensor u = unet->forward(latents.narrow(0, 0, local), 500.0, text.narrow(0, 0, local), 24.0, ctx);
          at::Tensor c = unet->forward(latents.narrow(0, local, local), 500.0, text.narrow(0, local, local), 24.0, ctx);
          return u + 12.0 * (c - u);
        }
        at::Tensor eps = unet->forward(latents, 500.0, text, 24.0, ctx);
        return eps.narrow(0, 0, local) + 12.0 * (eps.narrow(0, local, local) - eps.narrow(0, 0, local));
      };
      if (preview_only) {
        // 1 + 3 previews of random x0; the map fitted to a random VAE on the first.
        models::AutoencoderKL vae = random_vae(preset, device, dtype);
        pipeline::PreviewOptions po;
        po.path = comm.rank() == 0 ? preview_out : std::string();
        pipeline::LivePreview live(layout, comm, decoder_of(vae, device, dtype), po);
        at::Tensor x0 = at::randn({local, unet->config().in_channels, per_clip, h, w},
                                  at::TensorOptions().device(device).dtype(at::kFloat));
        live.add(0, x0);
        const double loop_before = live.record()["loop_seconds"].get<double>();
        for (int64_t i = 1; i <= 3; ++i) live.add(i, x0);
        tools::synchronize(device);
        const double loop = (live.record()["loop_seconds"].get<double>() - loop_before) / 3.0;
        live.finish();
        nlohmann::json r = live.record();
        r["loop_s_per_preview"] = loop;
        if (root) {
          std::printf("| %lld | preview only: on the loop %.1f ms per preview (x0 projected + all-gather + rank 0's copy); "
                      "encoder thread %.0f ms per preview (%lld written, %lld replaced); fit %.2f s once |\n",
                      static_cast<long long>(frames), 1e3 * loop,
                      1e3 * r["encode_seconds"].get<double>() / std::max<int64_t>(r["written"].get<int64_t>(), 1),
                      static_cast<long long>(r["written"].get<int64_t>()),
                      static_cast<long long>(r["replaced_while_waiting"].get<int64_t>()), r["fit_seconds"].get<double>());
          std::fflush(stdout);
        }
        rows.push_back({{"frames", frames}, {"ranks", ranks}, {"preview", r}});
        continue;
      }
      step();  // warm-up (cuDNN autotuning, allocator)
      tools::synchronize(device);
      comm.barrier();
      tools::reset_peak_memory(device);
      core::reset_peak_rss();
      comm.reset_stats();
      auto t0 = std::chrono::steady_clock::now();
      for (int64_t i = 0; i < iters; ++i) step();
      tools::synchronize(device);
      const double my_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / iters;
      const double comm_s = comm.seconds() / iters;
      const double mb_per_call = static_cast<double>(comm.bytes_sent()) / iters / 1e6;
      // The step takes as long as the slowest rank.
      at::Tensor times = comm.all_gather(at::tensor({my_s}, at::kDouble).to(device)).cpu();
      const double s = times.max().item<double>();
      // GFLOP per frame per CFG branch (the clip layout makes it the same on every rank).
      const double gflop_per_frame =
          gflop_override > 0
              ? gflop_override
              : models::count_unet_flops(unet->config(), flop_shape(1, per_clip, h, w, clips, settings)).total() /
                    per_clip / 1e9;
      const double tflops = 2.0 * frames * gflop_per_frame / s / 1000.0;
      const double peak_mb = tools::peak_memory_bytes(device) / 1048576.0;
      if (root) {
        std::printf("| %lld | %lld | %.3f | %.1f | %.4g | %.4g | %s | %.1f | %.2f | %.0f |\n",
                    static_cast<long long>(frames), static_cast<long long>(ranks), s, frames / s, gflop_per_frame,
                    tflops, peak_tflops > 0 ? std::to_string(100 * tflops / peak_tflops).substr(0, 5).c_str() : "-",
                    100.0 * comm_s / my_s, mb_per_call, peak_mb);
        std::fflush(stdout);
      }
      nlohmann::json preview;
      if (preview_every > 0) preview = measure_preview(preset, preview_every, preview_out, latents.narrow(0, 0, local),
                                                       step, layout, comm, device, dtype);
      rows.push_back({{"frames", frames}, {"ranks", ranks}, {"s_per_step", s}, {"frames_per_s", frames / s},
                      {"gflop_per_frame", gflop_per_frame}, {"gflop_source", gflop_override > 0 ? "flag" : "count"},
                      {"tflops", tflops}, {"comm_s_per_step_rank0", comm_s}, {"comm_share_rank0", comm_s / my_s},
                      {"mb_sent_per_unet_call_rank0", mb_per_call}, {"peak_mb", peak_mb},
                      {"channels_last", channels_last}, {"cudnn_benchmark", cudnn_benchmark}, {"preview", preview}});
    } catch (const std::exception& e) {
      if (root) {
        std::printf("| %lld | failed: %s |\n", static_cast<long long>(frames), std::string(e.what()).substr(0, 80).c_str());
      }
      if (until_oom) break;
    }
  }
  if (root && !json_path.empty()) {
    std::ofstream(json_path) << nlohmann::json{{"preset", preset}, {"device", device.str()},
                                               {"dtype", c10::toString(dtype)}, {"height", height}, {"width", width},
                                               {"frames_per_clip", per_clip}, {"ranks", ranks},
                                               {"channels_last", channels_last}, {"rows", rows}}.dump(2);
  }
  parallel::finalize_launch();
  return 0;
}

int main(int argc, char** argv) { return vi::tools::run_main(argc, argv, run); }
