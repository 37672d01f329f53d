// One in-process generation for the pipeline tests (under mpiexec or a local communicator):
// load, encode, denoise from the initial latents, keep every step's latents, optionally decode.
#pragma once

#include <ATen/Tensor.h>

#include <vector>

#include "parallel/clip_parallel.h"
#include "pipeline/text_to_video.h"
#include "video_infinity/communicator.h"
#include "video_infinity/generation_config.h"

namespace vi::test {

struct PipelineRun {
  at::Tensor final_latents;          // [Cl, 4, F, h, w]
  std::vector<at::Tensor> per_step;  // each [Cl, 4, F, h, w]
  std::vector<at::Tensor> frames;    // per local clip [F, H, W, 3] (with decode)
  parallel::ClipLayout layout;
  pipeline::StageTimes times;
};

// `config` is resolved for `comm`'s world size here; CPU, fp32. options.on_latents is taken.
PipelineRun run_pipeline(GenerationConfig config, parallel::Communicator& comm,
                         pipeline::PipelineOptions options = {}, bool decode = false);

}  // namespace vi::test
