#include "common/pipeline_run.h"

namespace vi::test {

PipelineRun run_pipeline(GenerationConfig config, parallel::Communicator& comm, pipeline::PipelineOptions options,
                         bool decode) {
  resolve_config(config, comm.world_size());
  PipelineRun r;
  options.on_latents = [&](int64_t, const at::Tensor& x) { r.per_step.push_back(x.clone()); };
  pipeline::TextToVideoPipeline p(config, comm, c10::kCPU, at::kFloat, options);
  p.load();
  const at::Tensor text = p.encode_text();
  r.final_latents = p.denoise(p.initial_latents(), text);
  if (decode) {
    for (int64_t j = 0; j < p.layout().local_clips; ++j) r.frames.push_back(p.decode_clip(r.final_latents, j));
  }
  r.layout = p.layout();
  r.times = p.times();
  return r;
}

}  // namespace vi::test
