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
// JSON (rank 0; others an empty object).
nlohmann::json generate(const GenerationConfig& config, parallel::Communicator& comm, FrameSink& sink,
                        const GenerateHooks& hooks = {});

}  // namespace vi::pipeline
