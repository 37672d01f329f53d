// Checkpoints of the denoising loop, one file per clip, so that a job killed at any moment
// resumes from the newest step every clip has, on any number of ranks (clips are decoupled
// from ranks).
//
// Layout:  DIR/step-000012/clip-00003.safetensors   after 12 of the steps, clip 3
// A clip file holds the clip's latents [1, C, F, h, w] fp32, its noise generator's state (uint8),
// the clip's rows of the scheduler's record (tensors "scheduler.<name>", counters and the
// scheduler's name in the metadata: opaque here) and the settings that decide the result (the
// fingerprint).
// Files are written to a temporary name and renamed, so a file is complete or absent.
#pragma once

#include <ATen/Tensor.h>
#include <nlohmann/json.hpp>

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "pipeline/checkpoint_layout.h"
#include "schedulers/scheduler.h"
#include "video_infinity/generation_config.h"

namespace vi::parallel {
class Communicator;
}

namespace vi::pipeline {

struct ClipCheckpoint {
  int64_t clip = 0;                        // global clip index
  int64_t steps_done = 0;                  // steps completed; the loop continues at this index
  at::Tensor latents;                      // [1, C, F, h, w] fp32
  at::Tensor generator_state;              // uint8, CPU generator state
  schedulers::SchedulerRecord scheduler;   // the clip's rows of every tensor
};

class CheckpointDir {
 public:
  // `fingerprint`: the settings a resumed run must share with the run that wrote the files.
  CheckpointDir(std::string dir, nlohmann::json fingerprint);

  const std::string& path() const { return dir_; }
  std::string step_dir(int64_t steps_done) const;
  std::string clip_file(int64_t steps_done, int64_t clip) const;

  // Writes one clip's file atomically (creating the step directory).
  void write(const ClipCheckpoint& clip) const;

  // The step counts (ascending) at which every clip in `clips` has a file here. A file that
  // exists is complete (atomic rename); its content is checked by read().
  std::vector<int64_t> complete_steps(const std::vector<int64_t>& clips) const;

  // Reads clip `clip` after `steps_done` steps. Throws naming the file when it is unreadable,
  // was written for other settings (listing each differing setting), or has unexpected tensors.
  ClipCheckpoint read(int64_t steps_done, int64_t clip) const;

  // Removes the files of `clips` (and their leftover temporaries) from the step directories with
  // fewer than `steps_done` steps, then each such directory if it is empty. Every rank prunes its
  // own clips, so that checkpoints on node-local disks (the same path, another disk on each host)
  // are pruned on every host; on a shared disk the last rank to prune removes the directory.
  void remove_older_than(int64_t steps_done, const std::vector<int64_t>& clips) const;

 private:
  void check_fingerprint(const std::map<std::string, std::string>& metadata, const std::string& path) const;

  std::string dir_;
  nlohmann::json fingerprint_;
};

// The newest step count that every rank lists in `complete` (each rank passes complete_steps
// for the clips it owns now), agreed by an all-reduce over `comm`; nullopt when there is none.
// Step counts range over 1..max_steps.
std::optional<int64_t> agree_newest_step(const std::vector<int64_t>& complete, int64_t max_steps,
                                         parallel::Communicator& comm);

}  // namespace vi::pipeline
