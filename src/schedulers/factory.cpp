// make_scheduler: the constructor of each name in the registry (registry.cpp).
#include <functional>
#include <map>

#include "core/check.h"
#include "schedulers/ddim_scheduler.h"
#include "schedulers/dpm_solver_multistep_scheduler.h"
#include "schedulers/registry.h"
#include "schedulers/scheduler.h"

namespace vi::schedulers {

namespace {

using Factory = std::function<std::unique_ptr<Scheduler>(const core::JsonConfig&, const SchedulerOverrides&)>;

std::unique_ptr<Scheduler> make_ddim(const core::JsonConfig& config, const SchedulerOverrides& overrides) {
  DDIMConfig c = DDIMConfig::from_json(config);
  if (overrides.timestep_spacing) c.timestep_spacing = *overrides.timestep_spacing;
  if (overrides.steps_offset) c.steps_offset = *overrides.steps_offset;
  if (overrides.eta) c.eta = *overrides.eta;
  return std::make_unique<DDIMScheduler>(c);
}

Factory dpm(const char* algorithm_type) {
  return [algorithm_type](const core::JsonConfig& config, const SchedulerOverrides& overrides) {
    DPMSolverMultistepConfig c = DPMSolverMultistepConfig::from_json(config);
    c.algorithm_type = algorithm_type;
    if (overrides.timestep_spacing) c.timestep_spacing = *overrides.timestep_spacing;
    if (overrides.steps_offset) c.steps_offset = *overrides.steps_offset;
    if (overrides.use_karras_sigmas) c.use_karras_sigmas = *overrides.use_karras_sigmas;
    if (overrides.solver_order) c.solver_order = *overrides.solver_order;
    if (overrides.lower_order_final) c.lower_order_final = *overrides.lower_order_final;
    if (overrides.euler_at_final) c.euler_at_final = *overrides.euler_at_final;
    if (overrides.final_sigmas_type) c.final_sigmas_type = *overrides.final_sigmas_type;
    return std::unique_ptr<Scheduler>(std::make_unique<DPMSolverMultistepScheduler>(c));
  };
}

// Keyed by SchedulerEntry::name.
const std::map<std::string, Factory>& factories() {
  static const std::map<std::string, Factory> table = {
      {"ddim", make_ddim}, {"dpmsolver++", dpm("dpmsolver++")}, {"sde-dpmsolver++", dpm("sde-dpmsolver++")}};
  return table;
}

}  // namespace

std::vector<std::string> scheduler_names() {
  std::vector<std::string> out;
  for (const auto& e : scheduler_registry()) out.emplace_back(e.name);
  return out;
}

std::unique_ptr<Scheduler> make_scheduler(const std::string& name, const core::JsonConfig& config,
                                          const SchedulerOverrides& overrides) {
  std::string chosen = name;
  if (chosen.empty()) {
    // The class the file names; among the entries of one class, the one its algorithm_type
    // names (DPM-Solver's default: dpmsolver++).
    const std::string cls = config.get_or<std::string>("_class_name", "");
    const std::string algorithm = config.get_or<std::string>("algorithm_type", "dpmsolver++");
    for (const auto& e : scheduler_registry()) {
      if (cls == e.class_name && (chosen.empty() || algorithm == e.name)) chosen = e.name;
    }
    VI_CHECK(!chosen.empty(), "{}: scheduler class '{}' is not supported; name one of {}", config.origin(), cls,
             join_list(scheduler_names(), ", "));
  }
  auto it = factories().find(chosen);
  VI_CHECK(it != factories().end(), "unknown scheduler '{}' (choose one of: {})", name,
           join_list(scheduler_names(), ", "));
  return it->second(config, overrides);
}

}  // namespace vi::schedulers
