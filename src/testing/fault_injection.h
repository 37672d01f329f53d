// Failure injection for the reliability tests (tests/e2e/test_reliability.cpp): the environment
// variable VI_FAULT="rank=R,step=K,mode=kill|stop|throw" makes rank R SIGKILL itself, SIGSTOP
// itself or throw right after step K (and its checkpoint). Lives in the test-support library;
// the binary installs it as a step hook, the pipeline knows nothing of it.
#pragma once

#include <cstdint>
#include <string>

namespace vi::testing {

class FaultInjection {
 public:
  // From VI_FAULT for this rank (nothing to do when unset or aimed at another rank); throws on
  // a malformed value.
  static FaultInjection from_environment(int rank);

  // Called after each completed step `done` (1-based).
  void after_step(int64_t done) const;

 private:
  int64_t step_ = -1;
  std::string mode_;
};

}  // namespace vi::testing
