#include "pipeline/generate.h"

#include <ATen/ATen.h>
#include <spdlog/spdlog.h>
#include <torch/version.h>

#include <unistd.h>

#include <chrono>
#include <ctime>
#include <cstdio>
#include <filesystem>
#include <optional>

#include "core/check.h"
#include "core/run_record.h"
#include "core/safetensors.h"
#include "core/temp_files.h"
#include "parallel/launch.h"
#include "pipeline/peak_memory.h"
#include "pipeline/progress.h"
#include "pipeline/plan.h"
#include "pipeline/preview.h"
#include "pipeline/prompt_travel.h"
#include "pipeline/seam_report.h"
#include "pipeline/settings.h"

namespace fs = std::filesystem;

namespace vi::pipeline {

namespace {

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

// "8 clips x 288 frames", or "4 clips x 288 + 4 clips x 287 frames" when clips differ.
std::string clips_phrase(const GenerationConfig& cfg) {
  const int64_t longer = cfg.frames % cfg.clips, base = cfg.frames / cfg.clips;
  if (longer == 0) return fmt::format("{} clips x {} frames", cfg.clips, base);
  return fmt::format("{} clips x {} + {} clips x {} frames", longer, base + 1, cfg.clips - longer, base);
}

// 0a. Every rank must run the same job. Each resolves its own flags, config file and (with
// --resume) the clip layout of the checkpoints it can see, so hosts given other flags, or
// node-local checkpoint disks with other contents, would otherwise compute a video that is not
// one. Each rank's settings that decide the result are compared with rank 0's; every rank
// throws the same usage error, naming each rank and setting that differs.
void check_ranks_agree(const GenerationConfig& cfg, parallel::Communicator& comm) {
  if (comm.world_size() == 1) return;
  const nlohmann::json mine = {{"host", parallel::host_name()}, {"settings", settings_to_json(cfg, Record::kResult)}};
  const std::vector<std::string> all = parallel::all_gather_strings(comm, mine.dump());
  const nlohmann::json first = nlohmann::json::parse(all[0]);
  std::string differences;
  for (size_t r = 1; r < all.size(); ++r) {
    const nlohmann::json other = nlohmann::json::parse(all[r]);
    for (const auto& [key, value] : first["settings"].items()) {
      const std::string theirs = other["settings"].contains(key) ? other["settings"][key].dump() : "(unset)";
      if (theirs != value.dump()) {
        differences += fmt::format("\n  rank {} ({}): {} {}, rank 0 ({}) has {}", r, other["host"].get<std::string>(),
                                   key, theirs, first["host"].get<std::string>(), value.dump());
      }
    }
  }
  if (differences.empty()) return;
  throw UsageError(fmt::format(
      "the ranks resolved different settings: every rank must get the same flags and config file, and with --resume "
      "see the same checkpoints (a --checkpoint-dir on node-local disks needs every host's own files from the same "
      "run):{}",
      differences));
}

// 0. What would fail later fails now, before the model loads: paths of every output. Rank 0
// checks the outputs it writes and tells the others, so that a refusal ends every rank as a
// usage error (reported once, no abort).
void check_outputs(const GenerationConfig& cfg, parallel::Communicator& comm, FrameSink& sink) {
  if (cfg.model_dir.empty()) throw UsageError("--model: no model directory given");
  check_ranks_agree(cfg, comm);
  std::optional<UsageError> refused;
  if (comm.rank() == 0) {
    try {
      sink.prepare();
      prepare_preview(cfg);
      if (!cfg.save_latents.empty()) {
        core::check_new_output(cfg.save_latents, "--save-latents", cfg.overwrite);
        core::check_writable(cfg.save_latents, "--save-latents");
      }
    } catch (const Error& e) {
      refused.emplace(e);
    }
  }
  at::Tensor flag = at::full({1}, refused ? 1.0f : 0.0f, at::TensorOptions(comm.device()).dtype(at::kFloat));
  comm.broadcast(flag, 0);
  if (refused) throw *refused;
  if (flag.item<float>() != 0.0f) throw UsageError("rank 0 refused the outputs");  // rank 0 says why
  if (!cfg.checkpoint_dir.empty()) {
    std::error_code ec;
    fs::create_directories(cfg.checkpoint_dir, ec);
    VI_CHECK(!ec && fs::is_directory(cfg.checkpoint_dir), "--checkpoint-dir: cannot create '{}': {}",
             cfg.checkpoint_dir, ec ? ec.message() : "not a directory");
    core::check_writable(cfg.checkpoint_dir + "/probe", "--checkpoint-dir");
  }
}

// 5. Decode and stream: rank 0 takes the clips in video order, its own or received, and hands
// them to the sink; the final latents come along when --save-latents asks for them.
struct Streamed {
  double encode_seconds = 0;
  std::vector<at::Tensor> latents;  // per clip [1, C, F, h, w] fp32 (rank 0, --save-latents)
  FrameChanges pixel_seams;         // rank 0: the seam report's pixel side
  double seam_seconds = 0;
};

Streamed stream_clips(const GenerationConfig& cfg, TextToVideoPipeline& pipe, const at::Tensor& latents,
                      parallel::Communicator& comm, FrameSink& sink, ProgressReporter& progress) {
  const auto& layout = pipe.layout();
  const int64_t H = cfg.height, W = cfg.width;
  const bool with_latents = !cfg.save_latents.empty();
  auto on_comm_device = [&](const at::Tensor& t) { return t.to(comm.device()); };
  Streamed out;
  if (comm.rank() != 0) {
    for (int64_t j = 0; j < layout.local_clips; ++j) {
      comm.send(on_comm_device(pipe.decode_clip(latents, j)), 0);
      if (with_latents) comm.send(on_comm_device(latents.narrow(0, j, 1).narrow(2, 0, layout.local_frames(j)).contiguous()), 0);
    }
    return out;
  }
  PixelSeamMeter seams(layout.lengths, cfg.dual_scope.loop);
  for (int64_t clip = 0; clip < cfg.clips; ++clip) {
    const int owner = static_cast<int>(clip / layout.local_clips);
    const int64_t F = layout.clip_frames(clip);
    at::Tensor frames, clip_latents;
    if (owner == 0) {
      frames = pipe.decode_clip(latents, clip);
      clip_latents = latents.narrow(0, clip, 1).narrow(2, 0, F);
    } else {
      frames = on_comm_device(at::empty({F, H, W, 3}, at::kByte));
      comm.recv(frames, owner);
      if (with_latents) {
        clip_latents = on_comm_device(at::empty({1, latents.size(1), F, H / 8, W / 8}, at::kFloat));
        comm.recv(clip_latents, owner);
      }
    }
    auto t0 = Clock::now();
    const at::Tensor cpu_frames = frames.cpu();
    sink.write(cpu_frames);
    out.encode_seconds += seconds_since(t0);
    seams.add_clip(cpu_frames);
    if (with_latents) out.latents.push_back(clip_latents.cpu().to(at::kFloat));
    progress.clip_written(clip);
  }
  out.pixel_seams = seams.changes();
  out.seam_seconds = seams.seconds();
  return out;
}

// --dtype's name of a dtype the pipeline runs in.
std::string dtype_name(c10::ScalarType dtype) {
  switch (dtype) {
    case c10::kFloat: return "fp32";
    case c10::kHalf: return "fp16";
    case c10::kBFloat16: return "bf16";
    default: return c10::toString(dtype);
  }
}

nlohmann::json sidecar_json(const GenerationConfig& cfg, const TextToVideoPipeline& pipe, parallel::Communicator& comm,
                            const FrameSink& sink, double encode_seconds, double total) {
  const auto& times = pipe.times();
  return {
      // `--config OUT.mp4.json` reads "settings" and skips the rest (apply_config_json).
      {"settings", config_to_json(cfg)},
      {"seed", cfg.seed},
      {"date", core::utc_iso8601(std::time(nullptr))},
      {"host", core::host_name()},
      {"command_line", core::shell_join(core::command_line())},
      {"versions", {{"video_infinity", VI_VERSION}, {"git", core::git_describe()}, {"libtorch", TORCH_VERSION}}},
      {"model_files", core::model_files_record(cfg.model_dir, cfg.unet_dir)},
      {"ranks", comm.world_size()},
      {"device", comm.device().str()},
      {"resolved_dtype", dtype_name(pipe.dtype())},  // what --dtype auto became
      {"scheduler", pipe.scheduler_name()},
      {"timesteps", pipe.timesteps()},
      {"video", sink.description()},
      {"times_s",
       {{"load", times.load}, {"text", times.text}, {"denoise", times.denoise}, {"decode", times.decode},
        {"encode", encode_seconds}, {"total", total}}},
      {"bytes_sent_rank0", {{"per_unet_call", times.bytes_per_unet_call}, {"denoise_total", times.bytes_total}}},
      {"checkpoint", {{"seconds", times.checkpoint}, {"resumed_from_step", times.resumed_from}}},
  };
}

void print_summary(const nlohmann::json& sidecar, const FrameSink& sink) {
  const auto& t = sidecar["times_s"];
  const auto& bytes = sidecar["bytes_sent_rank0"];
  std::printf("\n| stage | seconds |\n|---|---|\n| load | %.2f |\n| text | %.2f |\n| denoise | %.2f |\n"
              "| decode | %.2f |\n| encode | %.2f |\n| total | %.2f |\n",
              t["load"].get<double>(), t["text"].get<double>(), t["denoise"].get<double>(), t["decode"].get<double>(),
              t["encode"].get<double>(), t["total"].get<double>());
  std::printf("communication (rank 0): %.2f MB per UNet call, %.2f MB while denoising\n",
              bytes["per_unet_call"].get<double>() / 1e6, bytes["denoise_total"].get<double>() / 1e6);
  std::printf("%s", peak_memory_summary(sidecar["peak_memory"]).c_str());
  if (!sink.summary().empty()) std::printf("wrote %s and %s\n", sink.summary().c_str(), sink.sidecar_path().c_str());
}

// The plan of this run (headers and configs only; nothing loaded).
Plan plan_of(const GenerationConfig& cfg, parallel::Communicator& comm, c10::ScalarType dtype) {
  std::string source;
  const double available = available_memory(comm.device(), 0, &source);
  return make_plan(cfg, read_model_shapes(cfg.model_dir, cfg.unet_dir), comm.world_size(), dtype, comm.device(),
                   available, source);
}

void write_plan_json(const std::string& path, const nlohmann::json& json) {
  if (!path.empty()) core::write_file_atomically(path, json.dump(2) + "\n");
}

}  // namespace

std::unique_ptr<parallel::Communicator> open_communicator(const GenerationConfig& config,
                                                          const parallel::LaunchInfo& launch) {
  const c10::Device device = resolve_device(config.device, launch.local_rank);
  auto comm = parallel::make_communicator(launch, device);
  comm->set_timeout(config.comm_timeout);
  return comm;
}

nlohmann::json generate(const GenerationConfig& cfg, parallel::Communicator& comm, FrameSink& sink,
                        const GenerateHooks& hooks) {
  const auto t_start = Clock::now();
  check_outputs(cfg, comm, sink);
  const c10::Device device = comm.device();
  const c10::ScalarType dtype = resolve_dtype(cfg.dtype, device);
  if (!cfg.plan_json.empty() && comm.rank() == 0) core::check_writable(cfg.plan_json, "--plan-json");
  const Plan plan = plan_of(cfg, comm, dtype);
  if (comm.rank() == 0) {
    if (!cfg.quiet) spdlog::info("{}", format_plan_brief(plan));
    for (const auto& w : plan.warnings) {
      if (cfg.quiet) spdlog::warn("{}", w);
    }
  }

  ProgressReporter progress(resolve_progress_mode(cfg.progress, cfg.quiet, comm.rank(), ::isatty(STDERR_FILENO) != 0));
  PipelineOptions options;
  options.on_step = [&](int64_t i, int64_t n, double seconds) {
    if (hooks.on_step) hooks.on_step(i, n, seconds);
    progress.step(i, n, seconds);
  };
  std::unique_ptr<LivePreview> preview;  // --preview-every: made once the pipeline (its VAE) exists
  if (cfg.preview_every > 0) options.on_x0 = [&preview](int64_t i, const at::Tensor& x0) { preview->add(i, x0); };
  TextToVideoPipeline pipe(cfg, comm, device, dtype, options);
  if (cfg.preview_every > 0) preview = make_live_preview(cfg, comm, pipe);
  spdlog::info("{} frames = {} on {} rank{} ({}), {}x{}, {} steps of {}, {}", cfg.frames, clips_phrase(cfg),
               comm.world_size(), comm.world_size() == 1 ? "" : "s", device.str(), cfg.width, cfg.height, cfg.steps,
               cfg.scheduler, c10::toString(dtype));
  if (comm.rank() == 0) {
    const ClipPromptReport prompts = prompt_report(cfg);
    for (const auto& w : prompts.warnings) spdlog::warn("{}", w);
    for (const auto& line : prompts.lines) spdlog::info("{}", line);
  }
  progress.start({{"ranks", comm.world_size()}, {"clips", cfg.clips}, {"frames", cfg.frames}, {"steps", cfg.steps},
                  {"width", cfg.width}, {"height", cfg.height}, {"device", device.str()}},
                 cfg.steps, cfg.clips, pipe.layout().local_clips);
  progress.stage("load");
  pipe.load();                                       // 1
  progress.stage("text");
  at::Tensor text = pipe.encode_text();              // 2
  at::Tensor latents = pipe.initial_latents();       // 3
  const int64_t first_step = pipe.resume(latents);   // 3b
  progress.stage("denoise");
  latents = pipe.denoise(latents, text, first_step); // 4
  if (preview) preview->finish();                    // the last preview written before decoding

  progress.decode_begins();
  if (comm.rank() == 0) sink.open();
  Streamed streamed = stream_clips(cfg, pipe, latents, comm, sink, progress);  // 5
  // After the clips, not before them: a rank that stops after denoising is then found by rank 0
  // waiting for its clip (after writing its own), not in a collective before any frame is out.
  auto t_seams = Clock::now();
  const FrameChanges latent_seams = latent_changes(latents, pipe.layout(), cfg.dual_scope.loop, comm);  // 5b
  const double latent_seam_seconds = seconds_since(t_seams);
  nlohmann::json sidecar = nlohmann::json::object();
  const double measured = measured_peak_bytes(device);
  nlohmann::json memory = {{"estimated_peak_bytes", plan.peak_bytes},
                           {"estimated_peak_stage", plan.peak_stage},
                           {"measured_peak_bytes", measured}};
  if (comm.rank() == 0) {
    if (!cfg.quiet) {
      spdlog::info("memory (rank 0): estimated peak {} ({}), measured {} ({:+.0f}%)", format_bytes(plan.peak_bytes),
                   plan.peak_stage, format_bytes(measured), 100.0 * (plan.peak_bytes - measured) / measured);
    }
    nlohmann::json out = plan_to_json(plan);
    out["measured_peak_bytes"] = measured;
    write_plan_json(cfg.plan_json, out);
  }
  if (comm.rank() == 0) {
    auto t0 = Clock::now();
    sink.finish();
    streamed.encode_seconds += seconds_since(t0);
    if (!cfg.save_latents.empty()) core::save_safetensors(cfg.save_latents, {{"latents", at::cat(streamed.latents, 2)}});
  }
  const nlohmann::json peak_memory = peak_memory_json(gather_peak_memory(comm));  // every rank's, at the end
  if (comm.rank() == 0) {
    sidecar = sidecar_json(cfg, pipe, comm, sink, streamed.encode_seconds, seconds_since(t_start));
    sidecar["peak_memory"] = peak_memory;
    sidecar["memory"] = memory;
    if (preview) sidecar["preview"] = preview->record();
    SeamReport seams = make_seam_report(latent_seams, streamed.pixel_seams, pipe.layout().lengths,
                                        cfg.dual_scope.loop, cfg.seam_threshold);
    seams.seconds = latent_seam_seconds + streamed.seam_seconds;
    sidecar["seam_report"] = seam_report_json(seams);
    if (!cfg.quiet) spdlog::info("{}", seam_summary(seams));
    for (const auto& w : seam_warnings(seams)) spdlog::warn("{}", w);
    core::write_file_atomically(sink.sidecar_path(), sidecar.dump(2) + "\n");
    progress.done({{"output", sink.summary().empty() ? nlohmann::json(nullptr) : nlohmann::json(cfg.output)},
                   {"sidecar", sink.sidecar_path()}, {"times_s", sidecar["times_s"]}, {"peak_memory", peak_memory}});
    // --progress json: stdout holds the JSON lines only (the done event has the summary's figures).
    if (!cfg.quiet && progress.mode() != ProgressMode::kJson) print_summary(sidecar, sink);
  }
  comm.barrier();
  return sidecar;
}

nlohmann::json dry_run(const GenerationConfig& cfg, parallel::Communicator& comm, FrameSink& sink) {
  check_outputs(cfg, comm, sink);
  if (!cfg.plan_json.empty() && comm.rank() == 0) core::check_writable(cfg.plan_json, "--plan-json");
  const c10::Device device = comm.device();
  const c10::ScalarType dtype = resolve_dtype(cfg.dtype, device);
  const Plan plan = plan_of(cfg, comm, dtype);
  nlohmann::json out = plan_to_json(plan);
  if (comm.rank() == 0) std::printf("%s", format_plan(plan).c_str());
  if (cfg.probe) {
    // The last steps cost what any step costs (the same shapes); the first of the two pays the
    // warm-up (allocator, cuDNN's algorithm search), so the second is the one extrapolated.
    GenerationConfig probe_cfg = cfg;
    probe_cfg.checkpoint_dir.clear();
    probe_cfg.checkpoint_every = 0;
    probe_cfg.resume = false;
    std::vector<double> step_seconds;
    PipelineOptions options;
    options.on_step = [&](int64_t, int64_t, double seconds) { step_seconds.push_back(seconds); };
    TextToVideoPipeline pipe(probe_cfg, comm, device, dtype, options);
    pipe.load();
    at::Tensor text = pipe.encode_text();
    at::Tensor latents = pipe.initial_latents();
    const auto steps = static_cast<int64_t>(pipe.timesteps().size());
    latents = pipe.denoise(latents, text, std::max<int64_t>(steps - 2, 0));
    auto t0 = Clock::now();
    pipe.decode_clip(latents, 0);
    const double decode_clip = seconds_since(t0);
    const double per_step = step_seconds.back();
    const auto& times = pipe.times();
    const double local_clips = static_cast<double>(pipe.layout().local_clips);
    const double total = times.load + times.text + per_step * static_cast<double>(steps) + decode_clip * local_clips;
    const double measured = measured_peak_bytes(device);
    out["probe"] = {{"load_s", times.load},
                    {"text_s", times.text},
                    {"step_s", step_seconds},
                    {"decode_clip_s", decode_clip},
                    {"estimated_total_s", total},
                    {"measured_peak_bytes", measured}};
    if (comm.rank() == 0) {
      std::string steps_str;
      for (double t : step_seconds) steps_str += (steps_str.empty() ? "" : " / ") + fmt::format("{:.3f}", t);
      std::printf("probe (rank 0): load %.2f s, text %.2f s, steps %s s, decode of one clip %.2f s\n", times.load,
                  times.text, steps_str.c_str(), decode_clip);
      std::printf("  estimated job: %.2f s load + %.2f s text + %lld steps x %.3f s + %.0f local clip(s) x %.2f s decode "
                  "= %.0f s (without MP4 encoding; rank 0 also receives and encodes every clip)\n",
                  times.load, times.text, static_cast<long long>(steps), per_step, local_clips, decode_clip, total);
      std::printf("  peak memory through the probe: %s measured, %s estimated for the job\n",
                  format_bytes(measured).c_str(), format_bytes(plan.peak_bytes).c_str());
    }
  }
  if (comm.rank() == 0) write_plan_json(cfg.plan_json, out);
  comm.barrier();
  return out;
}

}  // namespace vi::pipeline
