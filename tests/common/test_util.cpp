#include "common/test_util.h"

#include <spdlog/sinks/ostream_sink.h>

#include <sstream>

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <sys/wait.h>

#include "core/check.h"

namespace fs = std::filesystem;

namespace vi::test {

std::string log_of(const std::function<void()>& f, spdlog::level::level_enum level) {
  std::ostringstream out;
  auto previous = spdlog::default_logger();
  auto logger = std::make_shared<spdlog::logger>("capture", std::make_shared<spdlog::sinks::ostream_sink_mt>(out));
  logger->set_level(level);
  spdlog::set_default_logger(logger);
  try {
    f();
  } catch (...) {
    spdlog::set_default_logger(previous);
    throw;
  }
  spdlog::set_default_logger(previous);
  return out.str();
}

std::string reference_dir() {
  const char* env = std::getenv("VI_REFERENCE_DIR");
  std::string dir = env && *env ? env : VI_REFERENCE_DIR_DEFAULT;
  VI_CHECK(fs::is_directory(dir), "reference data not found at '{}' (set VI_REFERENCE_DIR)", dir);
  return dir;
}

std::string golden_dir() { return reference_dir() + "/golden/tiny"; }
std::string tiny_model_dir() { return reference_dir() + "/models/tiny/cerspense/zeroscope_v2_576w"; }
std::string tiny_unet_dir() { return reference_dir() + "/models/tiny/adamdad/videocrafterv2_diffusers"; }
std::string binary_path() { return VI_BINARY_PATH; }
std::string source_dir() { return VI_SOURCE_DIR; }

std::string make_temp_dir(const std::string& tag) {
  std::random_device rd;
  for (int attempt = 0; attempt < 100; ++attempt) {
    fs::path dir = fs::temp_directory_path() / ("vi-test-" + tag + "-" + std::to_string(rd()));
    if (fs::create_directory(dir)) return dir.string();
  }
  VI_FAIL("could not create a temporary directory for '{}'", tag);
}

double max_abs_error(const at::Tensor& out, const at::Tensor& ref) {
  VI_CHECK(out.sizes() == ref.sizes(), "shape mismatch: {} vs {}", core::shape_str(out.sizes().vec()),
           core::shape_str(ref.sizes().vec()));
  return (out.to(at::kDouble).cpu() - ref.to(at::kDouble).cpu()).abs().max().item<double>();
}

double rel_error(const at::Tensor& out, const at::Tensor& ref) {
  double denom = ref.to(at::kDouble).abs().max().item<double>();
  return max_abs_error(out, ref) / (denom > 0 ? denom : 1.0);
}

at::Tensor golden(const std::string& file, const std::string& name) {
  core::SafetensorsFile f(file.front() == '/' ? file : golden_dir() + "/" + file);
  return f.tensor(name).clone();
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const vi::Error& e) {
    return e.what();
  }
  return "";
}

CommandResult run_command(const std::string& command) {
  CommandResult result;
  FILE* pipe = ::popen((command + " 2>&1").c_str(), "r");
  VI_CHECK(pipe != nullptr, "cannot run '{}'", command);
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof(buf), pipe)) > 0) result.output.append(buf, n);
  int status = ::pclose(pipe);
  result.status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return result;
}

std::string mpiexec(int ranks) {
  return "mpiexec --allow-run-as-root --oversubscribe --bind-to none -x OMP_NUM_THREADS=1 -n " +
         std::to_string(ranks) + " ";
}

std::unique_ptr<parallel::Communicator> world_communicator() {
  const parallel::LaunchInfo launch = parallel::init_launch(nullptr, nullptr);
  return launch.mpi ? parallel::make_mpi_communicator() : parallel::make_communicator(launch, c10::kCPU);
}

void write_file(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  VI_CHECK(out.good(), "cannot write '{}'", path);
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  VI_CHECK(in.good(), "cannot read '{}'", path);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

GenerationConfig golden_generation_config(int64_t clips, const std::string& scheduler, int64_t steps) {
  GenerationConfig c;
  c.model_dir = tiny_model_dir();
  c.unet_dir = tiny_unet_dir();
  c.prompts = {"A beagle wearing diving goggles swimming in the ocean while the camera is moving, coral reefs in "
               "the background."};
  c.negative_prompt = "";
  c.guidance = 12;
  c.fps = 24;
  c.height = 64;
  c.width = 64;
  c.frames_per_clip = 8;
  c.clips = clips;
  c.steps = steps;
  c.scheduler = scheduler;
  c.seed = 123;
  c.dual_scope.attn_padding = 2;
  c.dual_scope.top_k = 4;
  c.dual_scope.conv_padding = 4;
  return c;
}

}  // namespace vi::test
