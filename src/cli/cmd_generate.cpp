// `video-infinity [generate] --model DIR --prompt "..." --frames N`: the main job. Every rank
// denoises its clips; rank 0 receives the decoded clips one by one, encodes them as they
// arrive (never holding the whole video) and writes the MP4, PNGs, latents and a JSON sidecar.
#include <ATen/ATen.h>
#include <spdlog/spdlog.h>
#include <torch/version.h>

#include <chrono>
#include <csignal>
#include <cstdlib>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <unistd.h>

#include "cli/commands.h"
#include "core/check.h"
#include "core/safetensors.h"
#include "core/temp_files.h"
#include "pipeline/text_to_video.h"
#include "video_infinity/generation_config.h"
#include "video_infinity/video_writer.h"

namespace fs = std::filesystem;

namespace vi::cli {

namespace {

// Flags are parsed into `flags`; after --config is applied to the defaults, every flag given
// on the command line overrides it.
struct Bindings {
  GenerationConfig flags;
  std::string config_file;
  bool no_dual_scope = false;
  double phase_t = 800;
  std::vector<std::function<void(GenerationConfig&)>> apply;
};

template <typename Get>
void bind(CLI::App* cmd, Bindings& b, const std::string& flag, Get field, const std::string& help) {
  using T = std::decay_t<decltype(field(std::declval<GenerationConfig&>()))>;
  static const GenerationConfig defaults;
  auto* option = cmd->add_option(flag, field(b.flags), help);
  if constexpr (!std::is_same_v<T, std::vector<std::string>>) {
    option->default_val(field(const_cast<GenerationConfig&>(defaults)));
  }
  b.apply.push_back([option, field, &b](GenerationConfig& cfg) {
    if (option->count() > 0) field(cfg) = field(b.flags);
  });
}

template <typename Get>
void bind_flag(CLI::App* cmd, Bindings& b, const std::string& flag, Get field, const std::string& help) {
  auto* option = cmd->add_flag(flag, field(b.flags), help);
  b.apply.push_back([option, field, &b](GenerationConfig& cfg) {
    if (option->count() > 0) field(cfg) = field(b.flags);
  });
}

#define VI_FIELD(expr) [](GenerationConfig& c) -> auto& { return c.expr; }

void check_output_writable(const std::string& path, const char* flag) {
  fs::path dir = fs::path(path).parent_path();
  if (dir.empty()) dir = ".";
  VI_CHECK(fs::is_directory(dir), "{}: directory '{}' does not exist", flag, dir.string());
  const fs::path probe = dir / (".vi-write-test-" + std::to_string(::getpid()));
  std::ofstream out(probe);
  VI_CHECK(out.good(), "{}: directory '{}' is not writable", flag, dir.string());
  out.close();
  fs::remove(probe);
}

// Where --save-frames will create its directory: the directory itself, or its nearest existing
// ancestor, must be writable.
void check_frames_dir_writable(const std::string& dir) {
  fs::path p = fs::absolute(dir);
  while (!fs::exists(p) && p.has_parent_path() && p != p.parent_path()) p = p.parent_path();
  VI_CHECK(fs::is_directory(p), "--save-frames: '{}' is not a directory", p.string());
  check_output_writable((p / "frame").string(), "--save-frames");
}

// Test hook for the failure tests: VI_FAULT="rank=R,step=K,mode=kill|stop|throw" makes rank R
// SIGKILL itself, SIGSTOP itself or throw right after step K (and its checkpoint).
struct FaultInjection {
  int64_t step = -1;
  std::string mode;

  static FaultInjection from_environment(int rank) {
    FaultInjection f;
    const char* env = std::getenv("VI_FAULT");
    if (env == nullptr || *env == '\0') return f;
    long long r = -1, k = -1;
    char mode[16] = {};
    VI_CHECK(std::sscanf(env, "rank=%lld,step=%lld,mode=%15s", &r, &k, mode) == 3 && k >= 1,
             "VI_FAULT='{}': expected rank=R,step=K,mode=kill|stop|throw with K >= 1", env);
    f.mode = mode;
    VI_CHECK(f.mode == "kill" || f.mode == "stop" || f.mode == "throw", "VI_FAULT='{}': unknown mode '{}'", env,
             f.mode);
    if (r == rank) f.step = k;
    return f;
  }

  void after_step(int64_t done) const {
    if (done != step) return;
    spdlog::warn("VI_FAULT: {} after step {}", mode, done);
    if (mode == "kill") std::raise(SIGKILL);
    if (mode == "stop") {
      std::raise(SIGSTOP);
      return;  // continued (the launcher sends SIGCONT before ending the job)
    }
    VI_FAIL("VI_FAULT: injected failure after step {}", done);
  }
};

int run(Bindings& b, const parallel::LaunchInfo& launch) {
  using Clock = std::chrono::steady_clock;
  const auto t_start = Clock::now();
  // 0. Settings: defaults, then --config, then the flags given; checked before any work.
  GenerationConfig cfg;
  if (!b.config_file.empty()) apply_config_file(cfg, b.config_file);
  for (auto& f : b.apply) f(cfg);
  resolve_config(cfg, launch.world_size);
  VI_CHECK(!cfg.model_dir.empty(), "--model: no model directory given");
  if (launch.rank == 0) {
    check_output_writable(cfg.output, "--output");
    core::remove_stale_temporaries(cfg.output);  // of a rank 0 SIGKILLed while writing
    if (!cfg.save_latents.empty()) check_output_writable(cfg.save_latents, "--save-latents");
    if (!cfg.save_frames.empty()) check_frames_dir_writable(cfg.save_frames);
  }
  if (!cfg.checkpoint_dir.empty()) {
    std::error_code ec;
    fs::create_directories(cfg.checkpoint_dir, ec);
    VI_CHECK(!ec && fs::is_directory(cfg.checkpoint_dir), "--checkpoint-dir: cannot create '{}': {}",
             cfg.checkpoint_dir, ec ? ec.message() : "not a directory");
    check_output_writable(cfg.checkpoint_dir + "/probe", "--checkpoint-dir");
  }
  const c10::Device device = pipeline::resolve_device(cfg.device, launch.local_rank);
  const c10::ScalarType dtype = pipeline::resolve_dtype(cfg.dtype, device);
  auto comm = parallel::make_communicator(launch, device);

  VI_CHECK(launch.rank != 0 || video::mp4_supported() || !cfg.save_frames.empty(),
           "this binary has no ffmpeg: use --save-frames DIR to write PNG frames");
  comm->set_timeout(cfg.comm_timeout);
  const FaultInjection fault = FaultInjection::from_environment(launch.rank);

  pipeline::PipelineOptions options;
  options.dual_scope = !b.no_dual_scope;
  const bool progress = launch.rank == 0 && !cfg.quiet;
  double step_sum = 0;
  int64_t steps_run = 0;  // in this process (a resumed run starts past the checkpoint's steps)
  options.on_step = [&](int64_t i, int64_t n, double seconds) {
    fault.after_step(i + 1);
    step_sum += seconds;
    ++steps_run;
    if (!progress) return;
    const double per = step_sum / static_cast<double>(steps_run);
    spdlog::info("step {}/{}  {:.2f} s/step  ETA {:.0f} s", i + 1, n, per, per * static_cast<double>(n - i - 1));
  };
  pipeline::TextToVideoPipeline pipe(cfg, *comm, device, dtype, options);
  spdlog::info("{} frames = {} clips x {} frames on {} rank{} ({}), {}x{}, {} steps of {}, {}", cfg.frames, cfg.clips,
               cfg.frames_per_clip, launch.world_size, launch.world_size == 1 ? "" : "s", device.str(), cfg.width,
               cfg.height, cfg.steps, cfg.scheduler, c10::toString(dtype));
  pipe.load();
  at::Tensor text = pipe.encode_text();
  at::Tensor latents = pipe.initial_latents();
  const int64_t first_step = pipe.resume(latents);
  latents = pipe.denoise(latents, text, first_step);

  // Outputs are opened only now: a job that dies while denoising leaves no partial file (the
  // paths were checked at the start). A writer that does not finish removes its temporary file.
  std::unique_ptr<video::VideoWriter> mp4, pngs;
  if (launch.rank == 0) {
    if (video::mp4_supported()) {
      mp4 = video::open_mp4_writer(cfg.output, static_cast<int>(cfg.width), static_cast<int>(cfg.height),
                                   cfg.export_fps);
    } else {
      spdlog::warn("built without ffmpeg: no MP4, frames go to {}", cfg.save_frames);
    }
    if (!cfg.save_frames.empty()) pngs = video::open_png_writer(cfg.save_frames);
  }

  // 5. Decode and stream: rank 0 takes the clips in video order, its own or received.
  const auto& layout = pipe.layout();
  const int64_t F = layout.frames, H = cfg.height, W = cfg.width, h = H / 8, w = W / 8;
  const bool gather_latents = !cfg.save_latents.empty();
  double encode_seconds = 0;
  std::vector<at::Tensor> all_latents;
  auto on_comm_device = [&](const at::Tensor& t) { return t.to(comm->device()); };
  if (launch.rank == 0) {
    for (int64_t clip = 0; clip < cfg.clips; ++clip) {
      const int owner = static_cast<int>(clip / layout.local_clips);
      at::Tensor frames, clip_latents;
      if (owner == 0) {
        frames = pipe.decode_clip(latents, clip);
        clip_latents = latents.narrow(0, clip, 1);
      } else {
        frames = on_comm_device(at::empty({F, H, W, 3}, at::kByte));
        comm->recv(frames, owner);
        if (gather_latents) {
          clip_latents = on_comm_device(at::empty({1, latents.size(1), F, h, w}, at::kFloat));
          comm->recv(clip_latents, owner);
        }
      }
      auto t0 = Clock::now();
      frames = frames.cpu();
      if (mp4) mp4->write(frames);
      if (pngs) pngs->write(frames);
      encode_seconds += std::chrono::duration<double>(Clock::now() - t0).count();
      if (gather_latents) all_latents.push_back(clip_latents.cpu().to(at::kFloat));
      if (progress) spdlog::info("clip {}/{} written", clip + 1, cfg.clips);
    }
  } else {
    for (int64_t j = 0; j < layout.local_clips; ++j) {
      comm->send(on_comm_device(pipe.decode_clip(latents, j)), 0);
      if (gather_latents) comm->send(on_comm_device(latents.narrow(0, j, 1).contiguous()), 0);
    }
  }

  if (launch.rank == 0) {
    auto t0 = Clock::now();
    if (mp4) mp4->finish();
    if (pngs) pngs->finish();
    encode_seconds += std::chrono::duration<double>(Clock::now() - t0).count();
    if (gather_latents) core::save_safetensors(cfg.save_latents, {{"latents", at::cat(all_latents, 2)}});
    const auto& times = pipe.times();
    const double total = std::chrono::duration<double>(Clock::now() - t_start).count();
    nlohmann::json sidecar = {
        {"settings", config_to_json(cfg)},
        {"seed", cfg.seed},
        {"versions", {{"video_infinity", VI_VERSION}, {"libtorch", TORCH_VERSION}}},
        {"ranks", launch.world_size},
        {"device", device.str()},
        {"dtype", c10::toString(dtype)},
        {"scheduler", pipe.scheduler_name()},
        {"timesteps", pipe.timesteps()},
        {"video", mp4 ? mp4->description() : "none (PNG frames only)"},
        {"times_s",
         {{"load", times.load}, {"text", times.text}, {"denoise", times.denoise}, {"decode", times.decode},
          {"encode", encode_seconds}, {"total", total}}},
        {"bytes_sent_rank0", {{"per_unet_call", times.bytes_per_unet_call}, {"denoise_total", times.bytes_total}}},
        {"checkpoint", {{"seconds", times.checkpoint}, {"resumed_from_step", times.resumed_from}}},
    };
    const std::string sidecar_path = (mp4 ? cfg.output : cfg.save_frames + "/video") + ".json";
    core::write_file_atomically(sidecar_path, sidecar.dump(2) + "\n");
    if (!cfg.quiet) {
      std::printf("\n| stage | seconds |\n|---|---|\n| load | %.2f |\n| text | %.2f |\n| denoise | %.2f |\n"
                  "| decode | %.2f |\n| encode | %.2f |\n| total | %.2f |\n",
                  times.load, times.text, times.denoise, times.decode, encode_seconds, total);
      std::printf("communication (rank 0): %.2f MB per UNet call, %.2f MB while denoising\n",
                  static_cast<double>(times.bytes_per_unet_call) / 1e6, static_cast<double>(times.bytes_total) / 1e6);
      if (mp4) std::printf("wrote %s (%lld frames, %s) and %s\n", cfg.output.c_str(), static_cast<long long>(cfg.frames),
                           mp4->description().c_str(), sidecar_path.c_str());
    }
  }
  comm->barrier();
  return 0;
}

}  // namespace

Runner add_generate(CLI::App& app) {
  auto b = std::make_shared<Bindings>();
  auto* cmd = app.add_subcommand("generate", "Generate a video from a text prompt (the default subcommand)");
  // A flag given twice: the last one wins (scripts append overrides).
  cmd->option_defaults()->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  cmd->add_option("--config", b->config_file,
                  "JSON settings: the reference's examples/config.json format or our keys (flags override it)");
  bind(cmd, *b, "--model", VI_FIELD(model_dir), "Model directory (diffusers layout or HF cache entry)");
  bind(cmd, *b, "--unet", VI_FIELD(unet_dir), "Separate UNet directory (unet/ inside, or config + weights at its root)");
  bind(cmd, *b, "--prompt", VI_FIELD(prompts), "Prompt (repeatable: clip c of C takes prompt floor(c / C x P))");
  bind(cmd, *b, "--prompts-file", VI_FIELD(prompts_file), "One prompt per line, or 'FIRST-LAST: prompt' frame ranges");
  bind(cmd, *b, "--negative-prompt", VI_FIELD(negative_prompt), "Negative prompt for classifier-free guidance");
  bind(cmd, *b, "--frames", VI_FIELD(frames), "Total frames (divisible by --clips; 0: frames-per-clip x clips)");
  bind(cmd, *b, "--frames-per-clip", VI_FIELD(frames_per_clip), "Frames per clip (0: --frames / --clips, else 24)");
  bind(cmd, *b, "--clips", VI_FIELD(clips), "Clips (a multiple of the ranks; 0: one per rank)");
  bind(cmd, *b, "--height", VI_FIELD(height), "Height in pixels (multiple of 8)");
  bind(cmd, *b, "--width", VI_FIELD(width), "Width in pixels (multiple of 8)");
  bind(cmd, *b, "--steps", VI_FIELD(steps), "Denoising steps");
  bind(cmd, *b, "--guidance", VI_FIELD(guidance), "Classifier-free guidance scale");
  bind(cmd, *b, "--fps", VI_FIELD(fps), "Frame-rate conditioning of the UNet");
  bind(cmd, *b, "--export-fps", VI_FIELD(export_fps), "Frame rate of the MP4");
  bind(cmd, *b, "--seed", VI_FIELD(seed), "Seed; clip c's noise uses seed + c");
  bind(cmd, *b, "--scheduler", VI_FIELD(scheduler), "dpmpp-2m-sde (the reference's), dpmpp-2m or ddim");
  bind_flag(cmd, *b, "--karras", VI_FIELD(karras), "Karras sigmas for the DPM schedulers");
  bind(cmd, *b, "--dtype", VI_FIELD(dtype), "auto (fp16 on CUDA, fp32 on CPU), fp32, fp16 or bf16");
  bind(cmd, *b, "--device", VI_FIELD(device), "auto, cpu or cuda (the GPU is picked by the node-local rank)");
  bind(cmd, *b, "--frame-chunk", VI_FIELD(frame_chunk), "Frames per call of the per-frame layers (0: all; bounds memory)");
  bind(cmd, *b, "--vae-chunk", VI_FIELD(vae_chunk), "Frames per VAE decode call");
  bind_flag(cmd, *b, "--cfg-serial", VI_FIELD(cfg_serial),
            "Guidance branches as two UNet calls instead of one batch: half the activation memory, a bit slower");
  bind_flag(cmd, *b, "--channels-last", VI_FIELD(channels_last),
            "UNet 2D convolutions in channels-last layout (faster with cuDNN tensor cores; slower on the CPU)");
  bind(cmd, *b, "--attn-padding", VI_FIELD(dual_scope.attn_padding), "Temporal attention halo P (frames each side)");
  bind(cmd, *b, "--attn-top-k", VI_FIELD(dual_scope.top_k), "Global frames K shared by every clip");
  bind(cmd, *b, "--conv-padding", VI_FIELD(dual_scope.conv_padding), "Temporal conv halo Pc (frames each side)");
  {
    auto* phase = cmd->add_option("--phase-t", b->phase_t, "Phase threshold: local bias below it, global bias from it")
                      ->default_val(800);
    b->apply.push_back([phase, bp = b.get()](GenerationConfig& cfg) {
      if (phase->count() > 0) cfg.dual_scope.local_phase.t = cfg.dual_scope.global_phase.t = bp->phase_t;
    });
  }
  bind(cmd, *b, "--local-bias", VI_FIELD(dual_scope.local_phase.local_bias), "Bias on local frames when t < phase-t");
  bind(cmd, *b, "--global-bias", VI_FIELD(dual_scope.global_phase.global_bias),
       "Bias on global frames when t >= the global phase threshold");
  bind(cmd, *b, "--attn-scale", VI_FIELD(dual_scope.attn_scale), "Multiplies the temporal attention's 1/sqrt(d)");
  bind_flag(cmd, *b, "--token-num-scale", VI_FIELD(dual_scope.token_num_scale), "Scale rows by ln(keys)/ln(16)");
  bind_flag(cmd, *b, "--sync-groupnorm", VI_FIELD(dual_scope.sync_groupnorm), "Temporal GroupNorm statistics over the whole video");
  bind_flag(cmd, *b, "--mask-edge-halos", VI_FIELD(dual_scope.mask_edge_halos), "Mask the zero halos at the video's ends");
  cmd->add_flag("--no-dual-scope", b->no_dual_scope, "Run every clip alone (plain diffusers per clip; ablation)");
  bind(cmd, *b, "--output", VI_FIELD(output), "MP4 path (written to a temporary file, renamed at the end)");
  bind(cmd, *b, "--save-frames", VI_FIELD(save_frames), "Directory for lossless PNG frames");
  bind(cmd, *b, "--init-latents", VI_FIELD(init_latents), "safetensors with 'latents' [1, 4, frames, H/8, W/8] fp32");
  bind(cmd, *b, "--save-latents", VI_FIELD(save_latents), "Write the final latents as safetensors ('latents')");
  bind_flag(cmd, *b, "--quiet", VI_FIELD(quiet), "No progress or summary");
  bind(cmd, *b, "--checkpoint-dir", VI_FIELD(checkpoint_dir),
       "Directory for checkpoints (per clip: latents, sampler history, noise generator state)");
  bind(cmd, *b, "--checkpoint-every", VI_FIELD(checkpoint_every),
       "Steps between checkpoints (0: 5 when --checkpoint-dir is given); one is also written after the last step");
  bind_flag(cmd, *b, "--resume", VI_FIELD(resume),
            "Continue from the newest checkpoint in --checkpoint-dir that every clip has (any rank count; "
            "starts afresh when there is none)");
  bind(cmd, *b, "--comm-timeout", VI_FIELD(comm_timeout),
       "Seconds a rank waits for another before ending the whole job, naming the rank (0: wait forever)");
  return [cmd, b](const parallel::LaunchInfo& launch) { return cmd->parsed() ? run(*b, launch) : -1; };
}

}  // namespace vi::cli
