// Every scheduler the binary offers, in one table: the --scheduler value, the name make_scheduler
// takes, the diffusers class, the help text. The command line, the settings check, the help and
// the pipeline read it. Torch-free (the settings code and its fuzz target use it); the
// constructors are in factory.cpp. A new scheduler: its file pair in this folder, one entry
// here (registry.cpp) and one in factory.cpp.
#pragma once

#include <string>
#include <vector>

namespace vi::schedulers {

struct SchedulerEntry {
  const char* flag;        // the --scheduler value ("dpmpp-2m-sde")
  const char* name;        // Scheduler::name() and make_scheduler's name ("sde-dpmsolver++")
  const char* class_name;  // diffusers' _class_name ("DPMSolverMultistepScheduler")
  const char* help;        // one line for --help
  bool stochastic;         // step() draws noise with the default settings
  bool karras;             // takes Karras sigmas (--karras)
};

// In the order --help lists them; the first is the reference's sampler (ALGORITHM.md §5).
const std::vector<SchedulerEntry>& scheduler_registry();

// The entry of a --scheduler value; throws listing the values when there is none.
const SchedulerEntry& scheduler_for_flag(const std::string& flag);
// The --scheduler values, in registry order.
std::vector<std::string> scheduler_flags();
// "dpmpp-2m-sde (DPM-Solver++ 2M SDE, the reference's), dpmpp-2m (...) or ddim (...)".
std::string scheduler_flags_help();

}  // namespace vi::schedulers
