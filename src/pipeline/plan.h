// The plan of a generation before any compute: which clips each rank holds, what each rank's
// memory will peak at (weights from the safetensors headers, activations by stage from the layer
// shapes) and how many bytes the ranks exchange per step, with warnings when the settings will
// not fit or go far past the model's training length. `video-infinity --dry-run` prints it
// (and exits without loading weights); every real run logs its short form and, at the end,
// "estimated peak X, measured Y".
#pragma once

#include <c10/core/Device.h>
#include <c10/core/ScalarType.h>
#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>
#include <vector>

#include "models/autoencoder_kl.h"
#include "models/clip_text.h"
#include "models/unet3d_condition.h"
#include "video_infinity/generation_config.h"

namespace vi::pipeline {

// The process's resident memory with nothing loaded, on the CPU: LibTorch's libraries (the pip
// build maps libtorch_cuda and its CUDA/cuDNN/cuBLAS dependencies even on the CPU), MPI, libav,
// spdlog, plus what the first compute adds (OpenMP/oneDNN thread pools and caches, the x264
// encoder). Measured with LibTorch 2.11 (pip, CUDA 13 build) on the Debian 12 development
// machine, 2026-11-30, as the peak RSS (ru_maxrss): `video-infinity --version` 489 MB; a whole
// job on the tiny model (8 frames at 64x64, 1 step; about 20 MB of estimated activations) 554-565
// MB. (LibTorch 1.13 CPU-only took about 180 MB: docs/benchmarks.md.)
inline constexpr double kCpuBaselineBytes = 535e6;
// On CUDA: the CUDA context and cuDNN/cuBLAS workspaces outside LibTorch's caching allocator.
// Not measured here (no GPU session yet); a typical figure for an H100/H200 context.
inline constexpr double kCudaBaselineBytes = 1.0e9;

// The parts of a model directory the plan needs: the configs and, per component, its tensors'
// element counts and bytes on disk (safetensors headers only; no tensor is read).
struct ComponentWeights {
  std::string path;            // the weights file (or shard index)
  int64_t floating_params = 0;  // elements of floating tensors (converted to the run's dtype)
  double other_bytes = 0;       // non-floating tensors (kept in their own dtype)
  double file_bytes = 0;        // the data area(s): mapped while the component loads
};

struct ModelShapes {
  models::UNet3DConfig unet;
  models::ClipTextConfig text;
  models::AutoencoderKLConfig vae;
  ComponentWeights unet_weights, text_weights, vae_weights;
};

// Reads the configs and the safetensors headers of --model (and --unet).
ModelShapes read_model_shapes(const std::string& model_dir, const std::string& unet_dir);

struct RankClips {
  int rank = 0;
  int64_t first_clip = 0;
  std::vector<int64_t> frames;  // frames of each local clip
  int64_t first_frame = 0;      // of the video
};

struct StageEstimate {
  std::string stage;       // load, text, denoise, decode
  double bytes = 0;        // peak of the stage: baseline + weights held + the stage's activations
  double activations = 0;  // the stage's own share
  std::string detail;      // what dominates
};

struct Plan {
  // Layout.
  int world_size = 1;
  std::string device;  // "cpu", "cuda:0"
  std::string dtype;   // "Float", "Half", ...
  int64_t frames = 0, clips = 0;
  std::vector<RankClips> ranks;
  int64_t longest_clip = 0;    // frames; every rank's batch is padded to it
  int64_t local_clips = 0;     // per rank (the most on any rank)
  int64_t unet_batch = 0;      // per UNet call: local clips x CFG branches (1 with --cfg-serial)
  int64_t latent_channels = 4, latent_height = 0, latent_width = 0;
  int64_t training_frames = 16;
  // Memory of the busiest rank.
  double baseline_bytes = 0;
  double unet_bytes = 0, text_bytes = 0, vae_bytes = 0;  // weights in the run's dtype
  std::vector<StageEstimate> stages;
  std::string peak_stage;
  double peak_bytes = 0;
  double available_bytes = 0;  // 0: unknown
  std::string available_source;
  // Per denoising step, the busiest rank sends (CFG branches included, both serial calls).
  double halo_bytes_per_step = 0;    // temporal-conv and temporal-attention halos
  double gather_bytes_per_step = 0;  // all-gathers of the global frames
  int64_t temporal_conv_layers = 0, temporal_attention_layers = 0;
  double gflop_per_step = 0;  // one rank's UNet work per step (both CFG branches)
  std::vector<std::string> warnings;
};

// What the plan compares the estimate with: the CUDA device's total memory, or on the CPU
// MemAvailable (/proc/meminfo; physical memory where that is missing), shared by the ranks of
// this node (`ranks_here`; <= 0: from the launcher's environment, OMPI_COMM_WORLD_LOCAL_SIZE,
// MPI_LOCALNRANKS or LOCAL_WORLD_SIZE, else 1). Returns 0 and an empty source when unknown.
double available_memory(c10::Device device, int ranks_here, std::string* source);

// What the estimate is compared with after a run: on the CPU the process's peak RSS (VmHWM), on
// CUDA the caching allocator's peak reserved bytes plus the CUDA baseline.
double measured_peak_bytes(c10::Device device);

// A pure function of a resolved config, the model's shapes, the world size, the run's dtype and
// device, and the memory available per rank (0: unknown, no fit check).
Plan make_plan(const GenerationConfig& config, const ModelShapes& models, int world_size, c10::ScalarType dtype,
               c10::Device device, double available_bytes, const std::string& available_source = "");

// The whole plan (--dry-run), and its first lines: layout, peak and warnings (every run's log).
std::string format_plan(const Plan& plan);
std::string format_plan_brief(const Plan& plan);
nlohmann::json plan_to_json(const Plan& plan);

// "1.23 GB" (decimal units, like the summary's MB).
std::string format_bytes(double bytes);

}  // namespace vi::pipeline
