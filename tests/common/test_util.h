// Helpers shared by the tests: where the reference data is, golden tensors, error measures.
#pragma once

#include <ATen/ATen.h>
#include <spdlog/spdlog.h>

#include <functional>
#include <memory>
#include <string>

#include "core/safetensors.h"
#include "video_infinity/communicator.h"
#include "video_infinity/generation_config.h"

namespace vi::test {

// tests/data/reference (VI_REFERENCE_DIR overrides). Tests that need it fail loudly when absent.
std::string reference_dir();
std::string golden_dir();           // reference_dir()/golden/tiny
std::string tiny_model_dir();       // reference_dir()/models/tiny/cerspense/zeroscope_v2_576w
std::string tiny_unet_dir();        // reference_dir()/models/tiny/adamdad/videocrafterv2_diffusers
std::string binary_path();          // the built video-infinity binary
std::string source_dir();

// A fresh empty directory under the system temp dir, removed by the caller (or left for debugging).
std::string make_temp_dir(const std::string& tag);

// max |out - ref| / max |ref| in double precision (shapes must match).
double rel_error(const at::Tensor& out, const at::Tensor& ref);
double max_abs_error(const at::Tensor& out, const at::Tensor& ref);

// Loads one tensor of a golden file as a CPU float/int tensor (a copy).
at::Tensor golden(const std::string& file, const std::string& name);

// The settings of the reference's Video-Infinity golden runs on the tiny model (manifest:
// f_video_infinity): the beagle prompt, CFG 12, 64x64, clips of 8 frames, seed 123, P 2, K 4, Pc 4.
GenerationConfig golden_generation_config(int64_t clips, const std::string& scheduler, int64_t steps);

// The message of the vi::Error that `f` throws, or "" when it throws none.
std::string error_of(const std::function<void()>& f);
// What the default logger logs at `level` and above while `f` runs (rethrows f's exceptions).
std::string log_of(const std::function<void()>& f, spdlog::level::level_enum level = spdlog::level::trace);

// Runs a shell command; returns its exit status and its stdout+stderr.
struct CommandResult {
  int status = -1;
  std::string output;
};
CommandResult run_command(const std::string& command);
// mpiexec with the flags our tests need (root, oversubscription, one thread per rank).
std::string mpiexec(int ranks);

// The CPU communicator of the world this test process was launched into: MPI's under mpiexec
// (at any size, one included), the rendezvous store's under torchrun or srun without MPI.
std::unique_ptr<parallel::Communicator> world_communicator();

// Writes bytes to a file (for malformed-input tests).
void write_file(const std::string& path, const std::string& bytes);
std::string read_file(const std::string& path);

}  // namespace vi::test
