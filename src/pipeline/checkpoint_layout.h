// What a checkpoint directory says about the job that wrote it, without LibTorch (the settings
// code and its fuzz target use it): the format, the step directories' names, the clip layout.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "video_infinity/generation_config.h"

namespace vi::pipeline {

// Format 2 keeps the scheduler's state as its opaque record (format 1 named DPM-Solver's fields).
inline constexpr const char* kCheckpointFormat = "video-infinity checkpoint 2";

// A step directory's name after `steps_done` steps ("step-000012"), and back (-1 for any other name).
std::string step_dir_name(int64_t steps_done);
int64_t parse_step_dir(const std::string& name);

// The clip layout a checkpoint directory was written with: the fingerprint of a clip file in its
// newest step directory. nullopt when `dir` holds no clip file of this format (an absent or empty
// directory: --resume starts afresh; another format: read() names it).
struct CheckpointLayout {
  int64_t clips = 0, frames = 0, frames_per_clip = 0;
  std::string file;  // the clip file it was read from
};
std::optional<CheckpointLayout> read_checkpoint_layout(const std::string& dir);

// With --resume: the clip layout comes from the checkpoints, so that a job resumes on any rank
// count that divides their clip count without repeating --clips. A --clips, --frames or
// --frames-per-clip that disagrees with the checkpoints is an error saying which flag to drop;
// a rank count that does not divide the clips is an error listing those that do. Called by
// resolve_config on every rank, before the geometry is resolved; no-op without --resume or
// without checkpoints.
void apply_checkpoint_layout(GenerationConfig& config, int world_size);

}  // namespace vi::pipeline
