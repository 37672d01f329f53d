// Live preview (--preview-every K): every K denoising steps rank 0 replaces <output>.preview.mp4
// with the whole video as the model sees it at that step: every clip's x0 prediction through a
// fixed linear map from the latent channels to RGB, upsampled 4x from the latent resolution
// (half the output's width and height). The last preview stays beside the output.
//
// The map (C x 3 weights and 3 biases, in 0..255) is fitted once per run, at the first preview,
// to the model's own VAE decoder: rank 0 decodes one latent frame of its x0 (the middle frame of
// its first clip, a centre crop of at most 32x32 latents), averages the decoded image over the
// 8x8 pixel blocks that each latent pixel becomes, and solves the least-squares problem
// [latent channels, 1] -> RGB block mean over those pixels in float64. Its error against the
// full decode (the projection upsampled bilinearly to the decoded size) is logged and recorded
// in the sidecar ("preview"); the map is broadcast to the other ranks (one collective, once).
//
// Per preview, on the denoising loop: each rank projects its own clips to uint8 RGB at latent
// resolution (3 bytes per latent pixel; gathering fp16 latents instead would move 8) and one
// all-gather brings every clip's frames to every rank; rank 0 drops the padding frames of
// shorter clips and hands the frames to its encoder thread, which upsamples and encodes them
// (H.264 ultrafast, crf 30) into a temporary file renamed over the previous preview. So the
// step pays the x0, the projection and the gather; the encoding overlaps the next steps. A
// preview ready while the previous one is still encoding waits; a newer one replaces a waiting
// one (latest wins). A preview that cannot be fitted or written is a warning, never an error.
#pragma once

#include <ATen/Tensor.h>
#include <nlohmann/json.hpp>

#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "parallel/clip_parallel.h"
#include "video_infinity/communicator.h"
#include "video_infinity/generation_config.h"

namespace vi::pipeline {

class TextToVideoPipeline;

// The fitted latent-to-RGB map and how well it reproduces the decode it was fitted to.
struct LatentRgbMap {
  at::Tensor weight;  // [C + 1, 3] float32 on the CPU: one row per latent channel, then the bias
  int64_t pixels = 0;          // latent pixels fitted
  // On the fitting frame, in 0..255:
  double rmse = 0;             // the preview's image (projected, uint8, upsampled) vs the full decode
  double psnr_db = 0;          // of that
  double rmse_blocks = 0;      // the projection vs the decode's 8x8 block means (what is minimised)
  double rmse_constant = 0;    // the best constant colour vs the block means (for comparison)
  nlohmann::json to_json() const;
};

// Least squares over every pixel of `latents` [N, C, h, w] against `images` [N, 3, s h, s w]
// (the decode of those latents in 0..255, s an integer: 8 for the SD VAE), in float64.
LatentRgbMap fit_latent_rgb_map(const at::Tensor& latents, const at::Tensor& images);

// x with the latent channels in dimension `channel_dim` -> uint8 RGB: that dimension removed,
// 3 values last (clamped to 0..255, rounded). Element-wise per pixel, so a pixel's colour does
// not depend on the batch it is projected in. Runs on x's device.
at::Tensor project_to_rgb(const at::Tensor& x, int64_t channel_dim, const at::Tensor& weight);

// uint8 frames [N, h, w, 3] (CPU) upsampled `factor` times, bilinear with torch's
// align_corners=false convention: [N, factor h, factor w, 3]. Plain loops: it runs on the
// encoder thread, off ATen's thread pool.
at::Tensor upsample_frames(const at::Tensor& frames, int64_t factor);

// <output>.preview.mp4
std::string preview_path(const std::string& output);

// Rank 0, before any work (with the other outputs): refuses --preview-every without an MP4
// writer or an --output, and an existing preview unless --overwrite or --resume (an interrupted
// run leaves its preview). Nothing without the flag.
void prepare_preview(const GenerationConfig& config);

struct PreviewOptions {
  std::string path;       // the preview file; "" writes none (tests)
  double fps = 8;
  int64_t upscale = 4;    // preview size over the latent size
  int crf = 30;           // H.264 (MPEG-4 part 2 without libx264: qscale 8)
  std::string preset = "ultrafast";
  // Tests: rank 0, every preview's frames at latent resolution, uint8 [frames, h, w, 3] in
  // video order (padding dropped), on the CPU, before they are queued for encoding.
  std::function<void(int64_t step, const at::Tensor& frames)> on_frames;
};

class LivePreview {
 public:
  // Latent frames [N, C, h, w] -> images [N, 3, 8h, 8w] in [-1, 1] (the VAE); called on rank 0.
  using Decoder = std::function<at::Tensor(const at::Tensor&)>;

  LivePreview(const parallel::ClipLayout& layout, parallel::Communicator& comm, Decoder decoder,
              PreviewOptions options);
  // Without finish() (an error unwinding): drops a waiting preview, waits for one being written.
  ~LivePreview();
  LivePreview(const LivePreview&) = delete;
  LivePreview& operator=(const LivePreview&) = delete;

  // Collective: x0 [Cl, C, F, h, w] of this rank's clips after step `step` (PipelineOptions::on_x0).
  // The first call fits the map (rank 0) and broadcasts it.
  void add(int64_t step, const at::Tensor& x0);
  // Rank 0: waits until the last preview is written. Idempotent; every rank may call it.
  void finish();

  bool fitted() const { return map_.weight.defined(); }
  const LatentRgbMap& map() const { return map_; }  // on every rank once fitted
  // The sidecar's "preview" (rank 0, after finish()).
  nlohmann::json record() const;

 private:
  struct Job {
    int64_t step = -1;
    at::Tensor frames;  // uint8 [frames, h, w, 3] on the CPU
  };
  void fit(const at::Tensor& x0);
  void queue(Job job);
  void encode_loop();
  void write(const Job& job) const;

  parallel::ClipLayout layout_;
  parallel::Communicator& comm_;
  Decoder decoder_;
  PreviewOptions options_;
  LatentRgbMap map_;
  bool disabled_ = false;
  int64_t gathered_ = 0;
  double loop_seconds_ = 0, fit_seconds_ = 0;
  uint64_t bytes_per_gather_ = 0;  // sent by this rank per preview
  // Encoder thread (rank 0) and what it shares with the loop, under mutex_.
  std::thread encoder_;
  mutable std::mutex mutex_;
  std::condition_variable wake_;
  Job pending_;
  bool stop_ = false;
  int64_t written_ = 0, replaced_ = 0, failed_ = 0, last_written_step_ = -1;
  double encode_seconds_ = 0;
};

// The preview of a generate() run: the file preview_path(--output) at --export-fps, fitted to
// `pipe`'s VAE. The pipeline must outlive it.
std::unique_ptr<LivePreview> make_live_preview(const GenerationConfig& config, parallel::Communicator& comm,
                                               TextToVideoPipeline& pipe);

}  // namespace vi::pipeline
