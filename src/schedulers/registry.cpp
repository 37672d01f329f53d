#include "schedulers/registry.h"

#include "core/check.h"

namespace vi::schedulers {

const std::vector<SchedulerEntry>& scheduler_registry() {
  static const std::vector<SchedulerEntry> registry = {
      // The reference's sampler: DPMSolverMultistepScheduler.from_config(<the model's DDIM
      // config>, algorithm_type="sde-dpmsolver++").
      {"dpmpp-2m-sde", "sde-dpmsolver++", "DPMSolverMultistepScheduler", "DPM-Solver++ 2M SDE, the reference's", true,
       true},
      {"dpmpp-2m", "dpmsolver++", "DPMSolverMultistepScheduler", "DPM-Solver++ 2M, deterministic", false, true},
      {"ddim", "ddim", "DDIMScheduler", "DDIM, the model's own", false, false},
  };
  return registry;
}

const SchedulerEntry& scheduler_for_flag(const std::string& flag) {
  for (const auto& e : scheduler_registry()) {
    if (flag == e.flag) return e;
  }
  VI_FAIL("--scheduler: unknown scheduler '{}' (expected {})", flag, join_list(scheduler_flags()));
}

std::vector<std::string> scheduler_flags() {
  std::vector<std::string> out;
  for (const auto& e : scheduler_registry()) out.emplace_back(e.flag);
  return out;
}

std::string scheduler_flags_help() {
  std::vector<std::string> items;
  for (const auto& e : scheduler_registry()) items.push_back(std::string(e.flag) + " (" + e.help + ")");
  return join_list(items);
}

}  // namespace vi::schedulers
