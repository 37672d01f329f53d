// The whole job of one rank, as `video-infinity generate` runs it: checks before any work,
// 1 load, 2 text, 3 noise (3b resume), 4 denoise (with checkpoints), 5 decode and stream the
// clips to the writing rank (rank 0), whose sink writes them in video order; then the final
// latents, the sidecar JSON and the summary. Every rank calls it; it is collective.
#pragma once

#include <c10/core/Device.h>
#include <nlohmann/json.hpp>

#include <functional>
#include <memory>

#include "pipeline/frame_sink.h"
#include "pipeline/text_to_video.h"
#include "video_infinity/communicator.h"
#include "video_infinity/generation_config.h"

namespace vi::pipeline {

// The communicator for a resolved `config` on this rank: its device from --device and the
// node-local rank, its watchdog from --comm-timeout.
std::unique_ptr<parallel::Communicator> open_communicator(const GenerationConfig& config,
                                                          const parallel::LaunchInfo& launch);

struct GenerateHooks {
  // Every rank, after every step (and its checkpoint): (step index, steps, seconds of the step).
  std::function<void(int64_t, int64_t, double)> on_step;
};

// Runs the job on the device of `comm` (open_communicator). `config` must be resolved
// (resolve_config) for comm's world size; `sink` is used on rank 0 only. Returns the sidecar
// JSON (rank 0; others an empty object), which holds the memory plan's estimate and the measured
// peak ("memory").
nlohmann::json generate(const GenerationConfig& config, parallel::Communicator& comm, FrameSink& sink,
                        const GenerateHooks& hooks = {});

// `--dry-run`: the same checks as generate (settings are resolved by the caller; outputs here),
// then the plan (pipeline/plan.h) printed by rank 0 and written to --plan-json; nothing is
// loaded. With --probe, the model loads and the last two denoising steps and one clip's decode
// run for real (no checkpoints, no output): the job's time is extrapolated from them. Returns
// the plan's JSON (with "probe" when probing). Collective.
nlohmann::json dry_run(const GenerationConfig& config, parallel::Communicator& comm, FrameSink& sink);

}  // namespace vi::pipeline
