#include "testing/test_scheduler.h"

#include <filesystem>
#include <fstream>

#include "core/check.h"

namespace vi::testing {

void write_scheduler_config(const std::string& dir) {
  std::filesystem::create_directories(dir);
  const std::string path = (std::filesystem::path(dir) / "scheduler_config.json").string();
  std::ofstream out(path, std::ios::trunc);
  out << R"({
  "_class_name": "DDIMScheduler",
  "_diffusers_version": "0.17.0.dev0",
  "beta_end": 0.012,
  "beta_schedule": "scaled_linear",
  "beta_start": 0.00085,
  "clip_sample": false,
  "clip_sample_range": 1.0,
  "dynamic_thresholding_ratio": 0.995,
  "num_train_timesteps": 1000,
  "prediction_type": "epsilon",
  "sample_max_value": 1.0,
  "set_alpha_to_one": false,
  "skip_prk_steps": true,
  "steps_offset": 1,
  "thresholding": false,
  "trained_betas": null
}
)";
  out.close();
  VI_CHECK(out.good(), "{}: cannot write", path);
}

}  // namespace vi::testing
