#include "testing/fault_injection.h"

#include <spdlog/spdlog.h>

#include <csignal>
#include <cstdio>
#include <cstdlib>

#include "core/check.h"

namespace vi::testing {

FaultInjection FaultInjection::from_environment(int rank) {
  FaultInjection f;
  const char* env = std::getenv("VI_FAULT");
  if (env == nullptr || *env == '\0') return f;
  long long r = -1, k = -1;
  char mode[16] = {};
  VI_CHECK(std::sscanf(env, "rank=%lld,step=%lld,mode=%15s", &r, &k, mode) == 3 && k >= 1,
           "VI_FAULT='{}': expected rank=R,step=K,mode=kill|stop|throw with K >= 1", env);
  f.mode_ = mode;
  VI_CHECK(f.mode_ == "kill" || f.mode_ == "stop" || f.mode_ == "throw", "VI_FAULT='{}': unknown mode '{}'", env,
           f.mode_);
  if (r == rank) f.step_ = k;
  return f;
}

void FaultInjection::after_step(int64_t done) const {
  if (done != step_) return;
  spdlog::warn("VI_FAULT: {} after step {}", mode_, done);
  if (mode_ == "kill") std::raise(SIGKILL);
  if (mode_ == "stop") {
    std::raise(SIGSTOP);
    return;  // continued (the launcher sends SIGCONT before ending the job)
  }
  VI_FAIL("VI_FAULT: injected failure after step {}", done);
}

}  // namespace vi::testing
