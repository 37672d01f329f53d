// Where this process stands in a job that MPI did not launch: the torchrun-style and Slurm
// environments. (MPI's own launch is in communicator_mpi.cpp.)
#include <unistd.h>

#include <cstdlib>
#include <string>

#include "core/check.h"
#include "parallel/launch.h"

namespace vi::parallel {

namespace {

const char* env(const char* name) {
  const char* v = std::getenv(name);
  return v != nullptr && *v != '\0' ? v : nullptr;
}

// A non-negative integer below `max` (LOCAL_RANK, a port, a job id), else `fallback` when unset.
long long env_int(const char* name, long long fallback, long long max = 1 << 20) {
  const char* v = env(name);
  if (v == nullptr) return fallback;
  char* end = nullptr;
  const long long x = std::strtoll(v, &end, 10);
  VI_CHECK(end && *end == '\0' && x >= 0 && x < max, "environment variable {}='{}' is not an integer from 0 to {}",
           name, v, max - 1);
  return x;
}

std::string env_str(const char* name, const std::string& fallback = "") {
  const char* v = env(name);
  return v != nullptr ? v : fallback;
}

}  // namespace

std::string host_name() {
  char buf[256] = {};
  ::gethostname(buf, sizeof(buf) - 1);
  return buf;
}

std::string launcher_name(Launcher launcher) {
  switch (launcher) {
    case Launcher::kSingle: return "a single process";
    case Launcher::kMpi: return "MPI";
    case Launcher::kSlurm: return "Slurm (srun)";
    case Launcher::kTorchrun: return "a torchrun-style environment";
  }
  return "?";
}

std::string first_slurm_host(const std::string& nodelist) {
  // A host list is comma-separated entries, each a name with optional bracketed ranges:
  // "gpu[03-04,07]-ib,cpu1". The first host: the first entry with each bracket's first number.
  std::string host;
  for (size_t i = 0; i < nodelist.size() && nodelist[i] != ','; ++i) {
    if (nodelist[i] != '[') {
      host += nodelist[i];
      continue;
    }
    const size_t close = nodelist.find(']', i);
    VI_CHECK(close != std::string::npos, "Slurm host list '{}': '[' without ']'", nodelist);
    const std::string ranges = nodelist.substr(i + 1, close - i - 1);
    host += ranges.substr(0, ranges.find_first_of("-,"));
    i = close;
  }
  VI_CHECK(!host.empty(), "Slurm host list '{}' names no host", nodelist);
  return host;
}

LaunchInfo launch_from_environment() {
  LaunchInfo info;
  info.host = host_name();
  if (env("WORLD_SIZE") != nullptr || env("RANK") != nullptr) {
    // torchrun, or any launcher that follows its variables.
    info.launcher = Launcher::kTorchrun;
    info.world_size = static_cast<int>(env_int("WORLD_SIZE", 1));
    info.rank = static_cast<int>(env_int("RANK", 0));
    info.local_rank = static_cast<int>(env_int("LOCAL_RANK", info.rank));
    info.master_addr = env_str("MASTER_ADDR");
    info.master_port = static_cast<int>(env_int("MASTER_PORT", 29500, 65536));
    // torchrun's agent serves the store at MASTER_ADDR:MASTER_PORT itself; every worker is a
    // client. Its restarts reuse the store: each keeps its own keys.
    info.agent_store = env_str("TORCHELASTIC_USE_AGENT_STORE") == "True";
    info.store_prefix += "restart-" + env_str("TORCHELASTIC_RESTART_COUNT", "0") + "/";
  } else if (env("SLURM_STEP_NUM_TASKS") != nullptr && env("SLURM_PROCID") != nullptr) {
    // srun without an MPI plugin (set only in a job step, not in the batch script itself).
    info.launcher = Launcher::kSlurm;
    info.world_size = static_cast<int>(env_int("SLURM_STEP_NUM_TASKS", 1));
    info.rank = static_cast<int>(env_int("SLURM_PROCID", 0));
    info.local_rank = static_cast<int>(env_int("SLURM_LOCALID", 0));
    const std::string nodes = env_str("SLURM_STEP_NODELIST", env_str("SLURM_JOB_NODELIST"));
    info.master_addr = env_str("MASTER_ADDR", nodes.empty() ? "" : first_slurm_host(nodes));
    const long long job = env_int("SLURM_JOB_ID", 0, 1LL << 62);
    info.master_port = static_cast<int>(env_int("MASTER_PORT", 20000 + job % 20000, 65536));
    info.store_prefix += "slurm-" + env_str("SLURM_JOB_ID", "0") + "." + env_str("SLURM_STEP_ID", "0") + "/";
  }
  VI_CHECK(info.world_size >= 1 && info.rank < info.world_size, "{}: rank {} is outside a world of {}",
           launcher_name(info.launcher), info.rank, info.world_size);
  return info;
}

}  // namespace vi::parallel
