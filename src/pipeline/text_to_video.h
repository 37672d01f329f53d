// The text-to-video pipeline of one rank: its clips of the video, denoised together with the
// other ranks' through the temporal context, decoded on the rank that owns them.
// Stages: 1 load, 2 text embeddings, 3 initial latents, 4 denoising loop, 5 VAE decode.
#pragma once

#include <ATen/Tensor.h>
#include <ATen/core/Generator.h>
#include <c10/core/Device.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/model_dir.h"
#include "models/autoencoder_kl.h"
#include "models/clip_text.h"
#include "models/temporal_context.h"
#include "models/unet3d_condition.h"
#include "parallel/clip_parallel.h"
#include "pipeline/checkpoint.h"
#include "pipeline/clip_tokenizer.h"
#include "schedulers/scheduler.h"
#include "video_infinity/communicator.h"
#include "video_infinity/generation_config.h"

namespace vi::pipeline {

struct PipelineOptions {
  // Tests: noise for the stochastic sampler at step i for global clip c, [F, 4, h, w] like the
  // reference draws it; empty = drawn from the clip's generator.
  std::function<at::Tensor(int64_t step, int64_t clip)> noise_source;
  // Called after every step on every rank: (step index, steps, seconds of that step).
  std::function<void(int64_t, int64_t, double)> on_step;
  // Called after every step with the local latents [Cl, 4, F, h, w] (tests, checkpoints).
  std::function<void(int64_t, const at::Tensor&)> on_latents;
  // Every --preview-every steps (when > 0), on every rank, before the step's update: (step index,
  // the model's x0 prediction of the local clips [Cl, 4, F, h, w] fp32 on the device; a shorter
  // clip's padding frames hold no data). The live preview (pipeline/preview.h) listens here.
  std::function<void(int64_t, const at::Tensor&)> on_x0;
};

struct StageTimes {
  double load = 0, text = 0, denoise = 0, decode = 0;
  uint64_t bytes_per_unet_call = 0;  // sent by this rank, one UNet call (the first step)
  uint64_t bytes_total = 0;
  double checkpoint = 0;   // writing checkpoints (inside denoise)
  int64_t resumed_from = 0;  // steps restored from a checkpoint
};

class TextToVideoPipeline {
 public:
  // `config` must be resolved (resolve_config) for `comm`'s world size.
  TextToVideoPipeline(const GenerationConfig& config, parallel::Communicator& comm, c10::Device device,
                      c10::ScalarType dtype, PipelineOptions options = {});

  // Stage 1: every component from disk.
  void load();
  // Stage 2: [2 * Cl, 77, D] text states, laid out [uncond x Cl | cond of each local clip]; with
  // --prompt-blend >= 0 (prompt travel) per frame, [2 * Cl * F, 77, D] laid out the same with
  // each clip's F frame slots in turn (pipeline/prompt_travel.h).
  at::Tensor encode_text();
  // Stage 3: [Cl, 4, F, h, w] fp32: N(0,1) from a generator seeded seed + clip index (the
  // reference seeds seed + rank), or the slice of --init-latents for these clips.
  at::Tensor initial_latents();
  // With --resume: replaces `latents`, the scheduler state and the noise generators by those of
  // the newest checkpoint every rank has complete, and returns its step count (the loop goes
  // on from there); 0 when not resuming or when there is no checkpoint yet. Collective.
  int64_t resume(at::Tensor& latents);
  // Stage 4: the denoising loop from step `first_step`; returns the final latents
  // [Cl, 4, F, h, w] fp32. With --checkpoint-dir, checkpoints every --checkpoint-every steps and
  // after the last step.
  at::Tensor denoise(at::Tensor latents, const at::Tensor& text_states, int64_t first_step = 0);
  // Stage 5: uint8 frames [F, H, W, 3] of local clip j.
  at::Tensor decode_clip(const at::Tensor& latents, int64_t local_clip);
  // The VAE decode of single latent frames as the sampler leaves them: [N, 4, h, w] (any device,
  // dtype) -> fp32 images [N, 3, 8h, 8w] in [-1, 1] on the pipeline's device (the preview's fit).
  at::Tensor decode_images(const at::Tensor& latents);

  const parallel::ClipLayout& layout() const { return layout_; }
  const StageTimes& times() const { return times_; }
  const std::vector<int64_t>& timesteps() const { return scheduler_->timesteps(); }
  c10::ScalarType dtype() const { return dtype_; }
  std::string scheduler_name() const { return scheduler_->name(); }

 private:
  at::Tensor encode_frame_text();
  void write_checkpoint(int64_t steps_done, const at::Tensor& latents);
  at::Tensor guided_prediction(const at::Tensor& latents, int64_t t, const at::Tensor& text_states);
  at::Tensor step_noise(int64_t step, const at::Tensor& guided);

  GenerationConfig config_;
  parallel::Communicator& comm_;
  c10::Device device_;
  c10::ScalarType dtype_;
  PipelineOptions options_;
  parallel::ClipLayout layout_;
  core::ModelPaths paths_;
  std::unique_ptr<ClipTokenizer> tokenizer_;
  models::ClipTextModel text_encoder_{nullptr};
  models::UNet3DConditionModel unet_{nullptr};
  models::AutoencoderKL vae_{nullptr};
  std::unique_ptr<schedulers::Scheduler> scheduler_;
  std::unique_ptr<models::TemporalContext> context_;
  std::vector<at::Generator> generators_;  // one per local clip
  std::unique_ptr<CheckpointDir> checkpoints_;
  StageTimes times_;
};

// The settings that decide a generation's latents (what a resumed run must share with the run
// that wrote its checkpoints): the table's Record::kResult entries, dtype as resolved.
nlohmann::json result_settings(const GenerationConfig& config, c10::ScalarType dtype);
// auto -> cuda when available, else cpu; and the dtype for it (auto: fp16 on CUDA, fp32 on CPU).
c10::Device resolve_device(const std::string& flag, int local_rank);
c10::ScalarType resolve_dtype(const std::string& flag, c10::Device device);
// cuDNN's benchmark mode on CUDA (a no-op elsewhere): each convolution shape times cuDNN's
// algorithms once and keeps the fastest. A generation's shapes never change, so the pipeline
// turns it on; the first step pays the search (bench_denoise_step --no-cudnn-benchmark compares).
void set_cudnn_benchmark(c10::Device device, bool on);

}  // namespace vi::pipeline
