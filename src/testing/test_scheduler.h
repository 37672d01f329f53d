// The scheduler config of test models.
#pragma once

#include <string>

namespace vi::testing {

// Writes zeroscope_v2_576w's scheduler/scheduler_config.json (DDIM, scaled_linear 0.00085..0.012,
// 1000 steps, epsilon, steps_offset 1, set_alpha_to_one false) as `dir`/scheduler_config.json.
void write_scheduler_config(const std::string& dir);

}  // namespace vi::testing
